"""Tamiyo: distributed RL over Kafka for a GNN morphogenetic-training controller.

The Python API (``tamiyo.train``, ``tamiyo.evaluate``, ``tamiyo.TrainConfig``, ``tamiyo.RunResult``) is
loaded on first use, so ``import tamiyo`` stays cheap (no torch, no Kafka client).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tamiyo.gym_registration import register_envs

__version__ = "0.1.0"

# torch_geometric decorates a few functions with torch.jit.script at import, which recent torch answers with a
# FutureWarning on every start of every service: not the user's business (the scripted code is never used here).
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
register_envs()  # gymnasium.make("tamiyo/HostSim-v0") and "tamiyo/HostTrain-v0"; cheap (gym_registration.py)

if TYPE_CHECKING:
    from tamiyo.cli.api import RunResult, TrainConfig, evaluate, train

__all__ = ["RunResult", "TrainConfig", "__version__", "evaluate", "train"]
_API = frozenset({"RunResult", "TrainConfig", "evaluate", "train"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from tamiyo.cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'tamiyo' has no attribute {name!r}")
