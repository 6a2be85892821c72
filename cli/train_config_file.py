"""A `tamiyo train` configuration as a TOML file: what `--config FILE.toml` reads and runs/<id>/config.toml holds.

The keys are TrainConfig's fields.  TOML has no null, so a field that is None (unset) is left out and reads
back as its default, which is None for every optional field (checked by the tests).  A run's own config.toml
leaves out its ``run_id``, so passing it back starts a new run with the same settings instead of
colliding with the old run's topics.  Standard library only: the CLI reads it at start-up.
"""

from __future__ import annotations

import json
import math
import tomllib
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

from tamiyo.cli.train_config import TrainConfig
from tamiyo.cli.user_errors import UserError

# Written as comments, not as keys: a file passed back must describe a new run, not the old one.
NOT_REPRODUCED = ("run_id",)


class ConfigFileError(UserError):
    """A config file that cannot be read, or that names a setting or a value that TrainConfig has not."""


def _field_types() -> dict[str, tuple[type, ...]]:
    """Each field's accepted Python types, from TrainConfig's annotations (``int | None`` -> (int,))."""
    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, tuple[type, ...]] = {}
    for f in fields(TrainConfig):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        out[f.name] = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL, which TOML also wants escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def config_to_toml(config: TrainConfig, header: str = "") -> str:
    """The config as TOML; None fields and the fields of NOT_REPRODUCED are written as comments."""
    lines = [f"# {line}" for line in header.splitlines()]
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in NOT_REPRODUCED:
            lines.append(f"# {f.name} = {_toml_value(value)}  (left out: a new run gets a new id)")
        elif value is None:
            lines.append(f"# {f.name} = (unset)")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def config_values(text: str, source: str = "config") -> dict[str, Any]:
    """The settings a TOML text gives, checked against TrainConfig's fields and types."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigFileError(f"{source}: not valid TOML ({err})") from None
    types_by_field = _field_types()
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in types_by_field:
            raise ConfigFileError(f"{source}: unknown setting {key!r} (settings: {', '.join(types_by_field)})")
        accepted = types_by_field[key]
        if isinstance(value, int) and not isinstance(value, bool) and float in accepted and int not in accepted:
            value = float(value)  # `minutes = 3` means 3.0
        is_bool = isinstance(value, bool)
        if not isinstance(value, accepted) or (is_bool and bool not in accepted):
            wanted = " or ".join(t.__name__ for t in accepted)
            raise ConfigFileError(f"{source}: {key} = {value!r} is not a {wanted}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ConfigFileError(f"{source}: {key} must be a list of strings")
        values[key] = value
    return values


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a config file (``--config``); a ConfigFileError names what is wrong with it."""
    try:
        text = Path(path).read_bytes().decode("utf-8")  # TOML is UTF-8, whatever the locale says
    except OSError as err:
        raise ConfigFileError(f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigFileError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return config_values(text, str(path))


def load_config(path: str | Path) -> TrainConfig:
    """The TrainConfig a config file describes (the defaults where it is silent)."""
    return TrainConfig(**read_config_file(path))
