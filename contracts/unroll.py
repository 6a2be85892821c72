"""`Unroll`: the in-memory form of a Leyline `Trajectory` (one actor env, T steps).

Layout (T steps, H action heads, M = joint action count of the schema):

- ``graphs``: T+1 graphs: the observations at steps 0..T-1 and, last, the
  bootstrap observation (the observation after step T-1).
- ``actions`` int32 [T, H]; ``action_masks`` bool [T, M] (joint masks, C order
  over the heads, so a learner can recompute target log-probs under the same
  masks); ``behaviour_log_probs`` float32 [T].
- ``rewards`` float32 [T]; ``terminated``/``truncated`` bool [T].  After a
  terminated or truncated step the next observation in ``graphs`` is the first
  of a new episode.
- ``final_graphs``: one graph per truncated step (in step order), the
  observation the episode was cut at; the learner bootstraps from it
  (time-limit truncation is not termination).
- ``policy_versions`` int64 [T]: behaviour policy version used at each step.
- ``episode_returns`` float32 [K]: returns of episodes that ended in this unroll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tamiyo.contracts.graph import GraphSchema, PackedGraphs


@dataclass
class Unroll:
    graphs: PackedGraphs
    actions: np.ndarray
    action_masks: np.ndarray
    behaviour_log_probs: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_graphs: PackedGraphs | None
    policy_versions: np.ndarray
    actor_id: str = ""
    sequence: int = 0
    env_id: str = ""
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])

    def validate(self, schema: GraphSchema, structure_checked: bool = False) -> None:
        """Raise ValueError unless every array has the shape and dtype the contract says.

        ``structure_checked``: the unroll comes from `packing.unroll_from_proto`, whose graph checks need not
        run again (see `PackedGraphs.validate`)."""
        t, h, m = self.length, len(schema.action_heads), schema.joint_action_count
        if t < 1:
            raise ValueError("empty unroll")
        checks = [
            ("actions", self.actions, np.int32, (t, h)),
            ("action_masks", self.action_masks, np.bool_, (t, m)),
            ("behaviour_log_probs", self.behaviour_log_probs, np.float32, (t,)),
            ("rewards", self.rewards, np.float32, (t,)),
            ("terminated", self.terminated, np.bool_, (t,)),
            ("truncated", self.truncated, np.bool_, (t,)),
            ("policy_versions", self.policy_versions, np.int64, (t,)),
        ]
        for name, arr, dtype, shape in checks:
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(f"{name}: expected {np.dtype(dtype)}{shape}, got {arr.dtype}{arr.shape}")
        for name in ("behaviour_log_probs", "rewards"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} not finite")
        if not np.isfinite(self.episode_returns).all():
            raise ValueError("episode_returns not finite")
        if (self.actions < 0).any() or (self.actions >= np.asarray(schema.head_sizes, np.int32)).any():
            raise ValueError("action out of range")
        flat = np.ravel_multi_index(tuple(self.actions.T), schema.head_sizes)
        if not self.action_masks[np.arange(t), flat].all():
            raise ValueError("a taken action is masked out")
        if (self.terminated & self.truncated).any():
            raise ValueError("a step cannot be both terminated and truncated")
        self.graphs.validate(schema, structure_checked)
        if self.graphs.num_graphs != t + 1:
            raise ValueError(f"expected {t + 1} graphs, got {self.graphs.num_graphs}")
        n_trunc = int(self.truncated.sum())
        if n_trunc:
            if self.final_graphs is None or self.final_graphs.num_graphs != n_trunc:
                raise ValueError("one final graph per truncated step is required")
            self.final_graphs.validate(schema, structure_checked)
        elif self.final_graphs is not None and self.final_graphs.num_graphs != 0:
            raise ValueError("final graphs given without truncated steps")
