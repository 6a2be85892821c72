"""The interface every environment the actors run implements (host-train, host-sim, gym:<id>)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tamiyo.contracts.graph import GraphSchema, PackedGraphs


@dataclass
class Observation:
    graph: PackedGraphs  # exactly one graph
    action_mask: np.ndarray  # bool [schema.joint_action_count], C order over the heads


@dataclass
class StepResult:
    observation: Observation
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)


class Env(Protocol):
    """One environment.  ``step`` after a terminated/truncated step is an error: call ``reset``."""

    schema: GraphSchema

    def reset(self, seed: int | None = None) -> Observation: ...

    def step(self, action: np.ndarray) -> StepResult:
        """``action``: int array [num heads]; must be allowed by the current action mask."""
        ...
