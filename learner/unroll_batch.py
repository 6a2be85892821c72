"""list[Unroll] (B envs, same T) -> time-major tensors ``[T, B]`` and one graph batch.

All graphs of the batch go into one `PackedGraphs`, so a single forward pass
yields every value the learner needs, in this order:

    [0, T*B)            observations, time-major (flat index t*B + b)
    [T*B, T*B + B)      bootstrap observations (after the last step)
    [T*B + B, ... + K)  final observations of the K truncated steps

Truncation: the learner folds ``gamma * V(final obs)`` into the reward of a
truncated step and uses discount 0 there, so GAE/V-trace never look across
the reset into the next episode yet still bootstrap the cut-off episode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tamiyo.contracts.graph import GraphSchema, PackedGraphs
from tamiyo.contracts.unroll import Unroll


@dataclass
class UnrollBatch:
    graphs: PackedGraphs
    t: int
    b: int
    actions: torch.Tensor  # int64 [T, B, H]
    masks: torch.Tensor  # bool [T, B, M]
    behaviour_log_probs: torch.Tensor  # [T, B]
    rewards: torch.Tensor  # [T, B]
    terminated: torch.Tensor  # bool [T, B]
    truncated: torch.Tensor  # bool [T, B]
    policy_versions: torch.Tensor  # int64 [T, B]
    final_t: torch.Tensor  # int64 [K]: step of each final obs
    final_b: torch.Tensor  # int64 [K]: env column of each final obs
    episode_returns: np.ndarray  # returns of episodes that ended in these unrolls

    @property
    def num_steps(self) -> int:
        return self.t * self.b

    @property
    def num_finals(self) -> int:
        return int(self.final_t.shape[0])

    def split_values(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-graph values of ``graphs`` -> (values [T, B], bootstrap [B], finals [K])."""
        n = self.num_steps
        return v[:n].view(self.t, self.b), v[n : n + self.b], v[n + self.b :]

    def targets_inputs(self, final_values: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(rewards, discounts) ``[T, B]`` with truncations bootstrapped from their final obs."""
        rewards = self.rewards.clone()
        rewards[self.final_t, self.final_b] += gamma * final_values.detach()
        discounts = gamma * (~(self.terminated | self.truncated)).to(rewards.dtype)
        return rewards, discounts


def batch_unrolls(
    unrolls: Sequence[Unroll],
    device: torch.device | str = "cpu",
    schema: GraphSchema | None = None,
) -> UnrollBatch:
    """Stack ``unrolls`` column-wise; validates each against ``schema`` when given."""
    if not unrolls:
        raise ValueError("no unrolls")
    t, b = unrolls[0].length, len(unrolls)
    if any(u.length != t for u in unrolls):
        raise ValueError("all unrolls in a batch must have the same length")
    if schema is not None:
        for u in unrolls:
            u.validate(schema)

    finals = [u.final_graphs for u in unrolls if u.final_graphs is not None and u.final_graphs.num_graphs]
    stacked = PackedGraphs.concat([u.graphs for u in unrolls] + finals)
    # Unroll column b owns graphs [b*(T+1), (b+1)*(T+1)); its step t graph is at b*(T+1) + t.
    steps = (np.arange(b)[None, :] * (t + 1) + np.arange(t)[:, None]).reshape(-1)
    boots = np.arange(b) * (t + 1) + t
    trunc = np.stack([u.truncated for u in unrolls], axis=1)  # [T, B]
    fb, ft = np.nonzero(trunc.T)  # column-major: unroll by unroll, steps in order, as finals are stored
    k = fb.shape[0]
    order = np.concatenate([steps, boots, b * (t + 1) + np.arange(k)])

    def col(name: str) -> np.ndarray:
        return np.stack([getattr(u, name) for u in unrolls], axis=1)

    def tens(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return UnrollBatch(
        graphs=stacked.select(order),
        t=t,
        b=b,
        actions=tens(col("actions").astype(np.int64)),
        masks=tens(col("action_masks")),
        behaviour_log_probs=tens(col("behaviour_log_probs").astype(np.float32)),
        rewards=tens(col("rewards").astype(np.float32)),
        terminated=tens(col("terminated")),
        truncated=tens(trunc),
        policy_versions=tens(col("policy_versions").astype(np.int64)),
        final_t=tens(ft.astype(np.int64)),
        final_b=tens(fb.astype(np.int64)),
        episode_returns=np.concatenate([u.episode_returns for u in unrolls]).astype(np.float32),
    )
