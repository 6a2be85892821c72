"""A trained policy (snapshot file) as a `Controller`, so `tamiyo eval` compares it with the baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tamiyo.contracts.graph import GraphSchema
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.policy.snapshot import policy_file, read_policy_file
from tamiyo.producers.env_api import Observation


class PolicyController:
    """Acts greedily (the most probable valid action) unless ``sample`` is set."""

    def __init__(self, model: TamiyoGNN, name: str = "policy", sample: bool = False, device: str = "cpu") -> None:
        self.name = name
        self.schema = model.schema
        self._policy = ModelPolicy(model.eval(), device=device, deterministic=not sample)

    @staticmethod
    def from_file(path: str | Path, sample: bool = False, device: str = "cpu") -> PolicyController:
        weights = policy_file(path)
        model, version = read_policy_file(weights, device)
        return PolicyController(model, name=f"policy:{weights.name}@v{version}", sample=sample, device=device)

    def require_schema(self, schema: GraphSchema) -> PolicyController:
        """Refuse, with a clear reason, a policy trained for another graph schema."""
        if schema != self.schema:
            raise ValueError(f"{self.name} was trained for graph schema {self.schema.name!r} with other shapes")
        return self

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: Observation, env_info: dict[str, Any]) -> np.ndarray:
        step = self._policy(observation.graph, observation.action_mask[None, :])
        return step.actions[0].astype(np.int64)
