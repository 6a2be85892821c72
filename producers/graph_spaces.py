"""A host-env observation as fixed-shape arrays: the gymnasium ``Dict`` space and the conversion both ways.

Gymnasium spaces have fixed shapes; a `PackedGraphs` does not (the ``planted_in`` / ``grows`` edges come
and go with the seeds).  So every array is padded to its most, and counts say what is real:

- ``nodes_<type>``: float32 ``[max_nodes, F]``, rows past the type's count are 0;
- ``node_counts``: int32 ``[node types]`` in schema order;
- ``edges_<src>_<relation>_<dst>``: int32 ``[2, max_edges]`` local (src, dst) indices, columns past the
  relation's count are -1;
- ``edge_counts``: int32 ``[relations]`` in schema order;
- ``action_mask``: int8 ``[NUM_OPS * S * B]`` (MultiBinary), the joint mask in C order over (op, slot, blueprint).

Features are only promised finite (`PackedGraphs.validate`), so their bounds are float32's finite range.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from gymnasium import spaces

from tamiyo.contracts.graph import GraphSchema, Relation, RelationKey, single_graph
from tamiyo.contracts.host_schema import host_schema
from tamiyo.producers.env_api import Observation

FEATURE_BOUND = float(np.finfo(np.float32).max)
EDGE_PAD = -1
NODE_COUNTS = "node_counts"
EDGE_COUNTS = "edge_counts"
ACTION_MASK = "action_mask"
# The observation type: Any values because gymnasium types a Dict space's elements as dict[str, Space].
GraphObs = dict[str, Any]


def node_key(node_type: str) -> str:
    return f"nodes_{node_type}"


def edge_key(relation: Relation) -> str:
    return f"edges_{relation.src}_{relation.name}_{relation.dst}"


@dataclass(frozen=True)
class GraphLayout:
    """How one schema's graphs are padded: the most nodes per type and edges per relation."""

    schema: GraphSchema
    max_nodes: dict[str, int]
    max_edges: dict[RelationKey, int]

    def space(self) -> spaces.Dict:
        entries: dict[str, spaces.Space[np.ndarray]] = {}
        for nt in self.schema.node_types:
            shape = (self.max_nodes[nt.name], nt.num_features)
            entries[node_key(nt.name)] = spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, shape, np.float32)
        for rel in self.schema.relations:
            high = np.empty((2, self.max_edges[rel.key]), dtype=np.int32)
            high[0], high[1] = self.max_nodes[rel.src] - 1, self.max_nodes[rel.dst] - 1
            entries[edge_key(rel)] = spaces.Box(EDGE_PAD, high, dtype=np.int32)
        node_max = [self.max_nodes[nt.name] for nt in self.schema.node_types]
        edge_max = [self.max_edges[rel.key] for rel in self.schema.relations]
        entries[NODE_COUNTS] = spaces.Box(0, np.array(node_max, dtype=np.int32), dtype=np.int32)
        entries[EDGE_COUNTS] = spaces.Box(0, np.array(edge_max, dtype=np.int32), dtype=np.int32)
        entries[ACTION_MASK] = spaces.MultiBinary(self.schema.joint_action_count)
        return spaces.Dict(entries)

    @cached_property
    def node_parts(self) -> tuple[tuple[str, str, int, int], ...]:
        """(node type, key, most nodes, features) per node type, in schema order: computed once, used per step."""
        return tuple((n.name, node_key(n.name), self.max_nodes[n.name], n.num_features) for n in self.schema.node_types)

    @cached_property
    def edge_parts(self) -> tuple[tuple[RelationKey, str, int], ...]:
        """(relation, key, most edges) per relation, in schema order."""
        return tuple((r.key, edge_key(r), self.max_edges[r.key]) for r in self.schema.relations)

    def encode(self, obs: Observation) -> dict[str, np.ndarray]:
        """The padded arrays of one observation (fresh arrays: callers may keep and change them)."""
        graph = obs.graph
        out: dict[str, np.ndarray] = {}
        node_counts = np.zeros(len(self.node_parts), dtype=np.int32)
        for i, (name, key, most, width) in enumerate(self.node_parts):
            x = graph.node_features[name]
            node_counts[i] = _fits(x.shape[0], most, key)
            padded = out[key] = np.zeros((most, width), dtype=np.float32)
            padded[: x.shape[0]] = x
        edge_counts = np.zeros(len(self.edge_parts), dtype=np.int32)
        for i, (rel, key, most) in enumerate(self.edge_parts):
            e = graph.edge_index[rel]
            edge_counts[i] = _fits(e.shape[1], most, key)
            padded_e = out[key] = np.full((2, most), EDGE_PAD, dtype=np.int32)
            padded_e[:, : e.shape[1]] = e
        out[NODE_COUNTS], out[EDGE_COUNTS] = node_counts, edge_counts
        out[ACTION_MASK] = obs.action_mask.astype(np.int8)
        return out

    def decode(self, arrays: dict[str, np.ndarray]) -> Observation:
        """The native observation back from `encode`'s arrays (padding dropped by the counts)."""
        node_counts, edge_counts = arrays[NODE_COUNTS], arrays[EDGE_COUNTS]
        nodes = {name: arrays[key][: node_counts[i]] for i, (name, key, _, _) in enumerate(self.node_parts)}
        edges = {rel: arrays[key][:, : edge_counts[i]] for i, (rel, key, _) in enumerate(self.edge_parts)}
        return Observation(graph=single_graph(nodes, edges), action_mask=arrays[ACTION_MASK].astype(np.bool_))


def host_layout(num_slots: int, num_blueprints: int) -> GraphLayout:
    """The host envs' layout (contracts/host_schema.py): 1 global node, L = S + 1 layers, S slots and B
    blueprints in every graph; a relation has at most one edge per (src, dst) pair."""
    schema = host_schema(num_slots, num_blueprints)
    max_nodes = {"global": 1, "layer": num_slots + 1, "slot": num_slots, "blueprint": num_blueprints}
    max_edges = {rel.key: max_nodes[rel.src] * max_nodes[rel.dst] for rel in schema.relations}
    return GraphLayout(schema, max_nodes, max_edges)


def _fits(count: int, most: int, what: str) -> int:
    if count > most:
        raise ValueError(f"{what}: {count} entries, the layout holds {most}")
    return count
