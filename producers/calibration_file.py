"""A host-sim calibration file: the fitted `SimParams` and where they came from (JSON, written by `tamiyo calibrate`).

Loading checks what it reads: the format and version, only known `SimParams` fields, finite numbers within
the bounds the fit searches (`calibration.FITTED`), so a hand-edited or foreign file fails with the reason
instead of simulating nonsense.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from tamiyo.producers.calibration import FITTED
from tamiyo.producers.host_sim import SimParams

FORMAT, VERSION = "tamiyo.host-sim-calibration", 1


class CalibrationFileError(ValueError):
    """A calibration file that cannot be used, with the reason."""


def calibration_document(params: SimParams, **about: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "sim_params": dataclasses.asdict(params), **about}


def load_sim_params(path: str | Path) -> SimParams:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CalibrationFileError(f"{path}: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CalibrationFileError(f"{path}: not a {FORMAT} v{VERSION} file")
    raw = doc.get("sim_params")
    known = {f.name: f for f in dataclasses.fields(SimParams)}
    if not isinstance(raw, dict) or set(raw) - set(known):
        raise CalibrationFileError(f"{path}: sim_params must be an object of {sorted(known)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        kind = int if known[name].type in (int, "int") else float
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise CalibrationFileError(f"{path}: sim_params.{name} = {value!r} is not a finite number")
        if kind is int and value != int(value):
            raise CalibrationFileError(f"{path}: sim_params.{name} = {value!r} is not an integer")
        if name in FITTED and not FITTED[name][1] <= value <= FITTED[name][2]:
            lo, hi = FITTED[name][1:]
            raise CalibrationFileError(f"{path}: sim_params.{name} = {value} outside [{lo}, {hi}]")
        values[name] = kind(value)
    if values.get("width", 1) < 1:
        raise CalibrationFileError(f"{path}: sim_params.width must be at least 1")
    return SimParams(**values)
