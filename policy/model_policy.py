"""A `TamiyoGNN` as the behaviour policy callable that `RolloutCollector` steps envs with."""

from __future__ import annotations

import numpy as np
import torch

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.policy.batching import collate
from tamiyo.policy.distribution import MaskedFactoredCategorical
from tamiyo.policy.model import TamiyoGNN
from tamiyo.policy.protocol import PolicyStep


class ModelPolicy:
    def __init__(
        self,
        model: TamiyoGNN,
        version: int = 0,
        device: torch.device | str = "cpu",
        deterministic: bool = False,
    ) -> None:
        self.model = model
        self.version = version
        self.device = torch.device(device)
        self.deterministic = deterministic
        self.head_names = [h.name for h in model.schema.action_heads]

    @torch.no_grad()
    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        out = self.model(collate(graphs, self.device))
        mask = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.bool_)).to(self.device)
        dist = MaskedFactoredCategorical(out.logits, mask, self.head_names)
        actions, log_probs, _ = dist.sample(self.deterministic)
        return PolicyStep(
            actions=actions.cpu().numpy().astype(np.int32),
            log_probs=log_probs.cpu().numpy().astype(np.float32),
            version=self.version,
        )
