"""Policy snapshots: safetensors weights + a JSON config.  No pickle, no ``torch.load``.

The config carries everything needed to rebuild the network (graph schema,
model config, policy version); loading builds a fresh `TamiyoGNN` and copies
the weights in strictly, so outputs are bit-identical.

On disk a policy is two files side by side, ``<stem>.safetensors`` and ``<stem>.json``
(`write_snapshot`, `read_policy_file`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from tamiyo.contracts.graph import GraphSchema
from tamiyo.policy.model import ModelConfig, TamiyoGNN

FORMAT = "tamiyo-policy/1"


@dataclass
class Snapshot:
    weights: bytes  # safetensors
    config_json: str
    version: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.weights).hexdigest()


def encode_snapshot(model: TamiyoGNN, version: int) -> Snapshot:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": FORMAT,
        "schema": json.loads(model.schema.to_json()),
        "model": json.loads(model.config.to_json()),
        "version": int(version),
    }
    text = json.dumps(config, sort_keys=True)
    return Snapshot(weights=st_save(state, metadata={"format": FORMAT}), config_json=text, version=int(version))


def parse_snapshot_config(config_json: str) -> tuple[GraphSchema, ModelConfig, int]:
    """The graph schema, network config and policy version a snapshot's JSON config declares."""
    config = json.loads(config_json)
    declared = config.get("format") if isinstance(config, dict) else None
    if declared != FORMAT:
        raise ValueError(f"not a {FORMAT} snapshot: {declared!r}")
    schema = GraphSchema.from_json(json.dumps(config["schema"]))
    return schema, ModelConfig.from_json(json.dumps(config["model"])), int(config["version"])


def network_from_snapshot(
    weights: bytes, config_json: str, device: torch.device | str = "cpu"
) -> tuple[TamiyoGNN, int]:
    """Rebuild the network described by ``config_json`` and load ``weights`` into it: (network, version)."""
    schema, model_config, version = parse_snapshot_config(config_json)
    model = TamiyoGNN(schema, model_config)
    model.load_state_dict(snapshot_tensors(weights), strict=True)
    return model.to(device), version


def snapshot_tensors(weights: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a snapshot (safetensors: no code runs while parsing), on the CPU; ``load_state_dict``
    copies them onto the network's device."""
    return st_load(weights)


def write_snapshot(snapshot: Snapshot, directory: Path | str, stem: str = "policy") -> tuple[Path, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path, config_path = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    weights_path.write_bytes(snapshot.weights)
    config_path.write_text(snapshot.config_json)
    return weights_path, config_path


def policy_file(path: Path | str) -> Path:
    """The ``.safetensors`` file a path names: the file itself, or ``policy.safetensors`` in a directory."""
    weights = Path(path)
    if weights.is_dir():
        weights = weights / "policy.safetensors"
    if weights.suffix != ".safetensors":
        raise ValueError(f"{path}: expected a .safetensors policy (with its .json beside it)")
    return weights


def read_policy_file(path: Path | str, device: torch.device | str = "cpu") -> tuple[TamiyoGNN, int]:
    """Load a policy written by `write_snapshot` (or a run directory holding ``policy.safetensors``)."""
    weights = policy_file(path)
    return network_from_snapshot(weights.read_bytes(), weights.with_suffix(".json").read_text(), device)
