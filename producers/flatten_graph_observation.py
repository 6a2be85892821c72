"""`FlattenGraphObservation`: a graph ``Dict`` observation as one float32 vector, for vector-input libraries.

The vector (a ``Box``; ``segments`` names the slice of every part) is, in schema order:

- per node type, ``nodes_<type>``: the padded feature rows, flattened (``[max_nodes * F]``);
- per node type, ``valid_<type>``: 1 for the nodes that exist, 0 for padding (``[max_nodes]``);
- per relation, ``adjacency_<src>_<relation>_<dst>``: the dense 0/1 adjacency, flattened (``[max_src * max_dst]``):
  a fixed place per possible edge suits an MLP better than padded index lists;
- ``action_mask``: the joint action mask as 0/1.

The action mask is also in ``info["action_mask"]`` (bool) after every ``reset`` and ``step``, for
algorithms that mask actions themselves.  Wraps any env whose unwrapped env has a ``layout``
(`GraphLayout`), i.e. the ``tamiyo/Host*-v0`` envs.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tamiyo.producers.graph_spaces import (
    ACTION_MASK,
    EDGE_COUNTS,
    FEATURE_BOUND,
    NODE_COUNTS,
    GraphLayout,
    GraphObs,
    node_key,
)


class FlattenGraphObservation(gym.ObservationWrapper[np.ndarray, np.ndarray, GraphObs]):
    def __init__(self, env: gym.Env[GraphObs, np.ndarray]) -> None:
        super().__init__(env)
        # gymnasium annotates Wrapper.env with the wrapper's own types; this reference has the inner env's.
        self._inner = env
        try:
            layout = env.get_wrapper_attr("layout")
        except AttributeError:
            layout = None
        if not isinstance(layout, GraphLayout):
            raise TypeError("FlattenGraphObservation needs an env with a graph layout (tamiyo/Host*-v0)")
        self.layout = layout
        self.segments, low, high = _segments(layout)
        self._size = low.shape[0]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        # Per step only offsets: (key, feature slice, first validity index) and (key, first adjacency index, max dst).
        self._nodes = [
            (key, self.segments[key], self.segments[f"valid_{name}"].start) for name, key, _, _ in layout.node_parts
        ]
        self._edges = [
            (key, self.segments[_adjacency_key(rel)].start, layout.max_nodes[rel[2]])  # rel: (src, name, dst)
            for rel, key, _ in layout.edge_parts
        ]

    def observation(self, observation: GraphObs) -> np.ndarray:
        out = np.zeros(self._size, dtype=np.float32)
        node_counts, edge_counts = observation[NODE_COUNTS].tolist(), observation[EDGE_COUNTS].tolist()
        for (key, features, valid), n in zip(self._nodes, node_counts, strict=True):
            out[features] = observation[key].ravel()
            out[valid : valid + n] = 1.0
        # Where each edge sits in its relation's dense adjacency; one scatter for all relations.
        cells = [
            start + observation[key][0, :m] * n_dst + observation[key][1, :m]
            for (key, start, n_dst), m in zip(self._edges, edge_counts, strict=True)
        ]
        out[np.concatenate(cells)] = 1.0
        out[self.segments[ACTION_MASK]] = observation[ACTION_MASK]
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self._inner.reset(seed=seed, options=options)
        return self.observation(obs), _with_mask(info, obs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._inner.step(action)
        return self.observation(obs), reward, terminated, truncated, _with_mask(info, obs)


def _with_mask(info: dict[str, Any], obs: GraphObs) -> dict[str, Any]:
    return {**info, ACTION_MASK: obs[ACTION_MASK].astype(np.bool_)}


def _adjacency_key(key: tuple[str, str, str]) -> str:
    return "adjacency_" + "_".join(key)


def _segments(layout: GraphLayout) -> tuple[dict[str, slice], np.ndarray, np.ndarray]:
    """The slice of every part of the vector, and the vector's bounds."""
    schema, most = layout.schema, layout.max_nodes
    parts: list[tuple[str, int, float, float]] = []  # (name, length, low, high)
    parts += [
        (node_key(n.name), most[n.name] * n.num_features, -FEATURE_BOUND, FEATURE_BOUND) for n in schema.node_types
    ]
    parts += [(f"valid_{n.name}", most[n.name], 0.0, 1.0) for n in schema.node_types]
    parts += [(_adjacency_key(r.key), most[r.src] * most[r.dst], 0.0, 1.0) for r in schema.relations]
    parts.append((ACTION_MASK, schema.joint_action_count, 0.0, 1.0))
    segments: dict[str, slice] = {}
    start = 0
    for name, length, _, _ in parts:
        segments[name] = slice(start, start + length)
        start += length
    low = np.concatenate([np.full(length, lo, dtype=np.float32) for _, length, lo, _ in parts])
    high = np.concatenate([np.full(length, hi, dtype=np.float32) for _, length, _, hi in parts])
    return segments, low, high
