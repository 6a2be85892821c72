"""Learner checkpoints on disk without pickle: safetensors for tensors, JSON for the rest.

A checkpoint holds the network (snapshot format), the optimizer state
(per-parameter tensors flattened to ``opt/<param index>/<name>``; scalars in
JSON) and the learner's counters, so ``--resume`` continues exactly.
Written atomically: a directory is filled under a temporary name, then renamed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.snapshot import encode_snapshot, network_from_snapshot

MODEL_FILE, MODEL_CONFIG = "model.safetensors", "model.json"
OPTIM_FILE, STATE_FILE = "optimizer.safetensors", "state.json"


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt/{pid}/{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split("/", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    directory: Path | str, model: TamiyoGNN, optimizer: torch.optim.Optimizer, counters: dict[str, Any]
) -> Path:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    snap = encode_snapshot(model, int(counters.get("version", 0)))
    (tmp / MODEL_FILE).write_bytes(snap.weights)
    (tmp / MODEL_CONFIG).write_text(snap.config_json)
    tensors, meta = _optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / OPTIM_FILE))
    (tmp / STATE_FILE).write_text(json.dumps({"optimizer": meta, "counters": counters}, indent=1))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def load_checkpoint(directory: Path | str, device: str = "cpu") -> tuple[TamiyoGNN, dict[str, Any]]:
    """The checkpoint's network and counters; call `restore_optimizer` once the optimizer exists."""
    directory = Path(directory)
    model, _ = network_from_snapshot(
        (directory / MODEL_FILE).read_bytes(), (directory / MODEL_CONFIG).read_text(), device
    )
    return model, json.loads((directory / STATE_FILE).read_text())["counters"]


def restore_optimizer(directory: Path | str, optimizer: torch.optim.Optimizer, device: str = "cpu") -> None:
    directory = Path(directory)
    meta = json.loads((directory / STATE_FILE).read_text())["optimizer"]
    _optimizer_from_flat(optimizer, load_file(str(directory / OPTIM_FILE), device=device), meta)
