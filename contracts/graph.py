"""Graph and action-space contracts shared by environments, the codec and the learner.

Pure numpy, no protobuf and no torch: this is the in-memory shape of what
`GraphState` and `Trajectory` carry on the wire.

A *schema* names the node types (with feature widths), the relations between
them and the factored action heads.  A `PackedGraphs` holds G graphs of one
schema in columnar form: per node type one float32 feature matrix with the
nodes of all graphs stacked, plus per-graph node counts; per relation one
int32 ``[2, E]`` edge array whose indices are *local to their graph*, plus
per-graph edge counts.  Batching many graphs is then offset arithmetic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

RelationKey = tuple[str, str, str]


@dataclass(frozen=True)
class NodeType:
    name: str
    num_features: int


@dataclass(frozen=True)
class Relation:
    src: str
    name: str
    dst: str

    @property
    def key(self) -> RelationKey:
        return (self.src, self.name, self.dst)


@dataclass(frozen=True)
class ActionHead:
    """One factor of the action.

    ``node_type`` None: logits come from the graph readout (fixed ``size``).
    ``node_type`` set: a pointer head, one logit per node of that type; every
    graph of the schema has exactly ``size`` nodes of that type.
    """

    name: str
    size: int
    node_type: str | None = None


@dataclass(frozen=True)
class GraphSchema:
    name: str
    node_types: tuple[NodeType, ...]
    relations: tuple[Relation, ...]
    action_heads: tuple[ActionHead, ...]
    global_node_type: str = "global"

    def __post_init__(self) -> None:
        names = [n.name for n in self.node_types]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate node type in schema {self.name!r}")
        for rel in self.relations:
            if rel.src not in names or rel.dst not in names:
                raise ValueError(f"relation {rel.key} names an unknown node type")
        for head in self.action_heads:
            if head.size < 1:
                raise ValueError(f"action head {head.name!r} has size {head.size}")
            if head.node_type is not None and head.node_type not in names:
                raise ValueError(f"action head {head.name!r} points at unknown node type")
        if self.global_node_type not in names:
            raise ValueError(f"global node type {self.global_node_type!r} missing")

    @property
    def head_sizes(self) -> tuple[int, ...]:
        return tuple(h.size for h in self.action_heads)

    @property
    def joint_action_count(self) -> int:
        """Length of the flattened joint action mask (C order over the heads)."""
        return int(np.prod(self.head_sizes))

    def feature_width(self, node_type: str) -> int:
        for n in self.node_types:
            if n.name == node_type:
                return n.num_features
        raise KeyError(node_type)

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "global_node_type": self.global_node_type,
                "node_types": [[n.name, n.num_features] for n in self.node_types],
                "relations": [list(r.key) for r in self.relations],
                "action_heads": [[h.name, h.size, h.node_type] for h in self.action_heads],
            },
            sort_keys=True,
        )

    @staticmethod
    def from_json(text: str) -> GraphSchema:
        d = json.loads(text)
        return GraphSchema(
            name=str(d["name"]),
            global_node_type=str(d["global_node_type"]),
            node_types=tuple(NodeType(str(n), int(f)) for n, f in d["node_types"]),
            relations=tuple(Relation(str(s), str(r), str(t)) for s, r, t in d["relations"]),
            action_heads=tuple(
                ActionHead(str(n), int(s), None if t is None else str(t)) for n, s, t in d["action_heads"]
            ),
        )


@dataclass
class PackedGraphs:
    """G graphs of one schema, columnar.  Edge indices are local to each graph."""

    node_features: dict[str, np.ndarray]  # type -> float32 [sum_n, F]
    node_counts: dict[str, np.ndarray]  # type -> int32 [G]
    edge_index: dict[RelationKey, np.ndarray] = field(default_factory=dict)  # rel -> int32 [2, sum_E]
    edge_counts: dict[RelationKey, np.ndarray] = field(default_factory=dict)  # rel -> int32 [G]

    @property
    def num_graphs(self) -> int:
        return int(next(iter(self.node_counts.values())).shape[0])

    def validate(self, schema: GraphSchema, structure_checked: bool = False) -> None:
        """Raise ValueError unless the arrays are a well-formed batch of ``schema`` graphs.

        ``structure_checked``: the graphs come from `packing.graphs_from_proto`, which has already checked
        every count, size, local index and feature value; only what the schema adds is checked then (node
        types and widths, relations, pointer-head node counts), with no pass over the edges."""
        g = self.num_graphs
        if set(self.node_features) != {n.name for n in schema.node_types}:
            raise ValueError("unexpected node types")
        if set(self.edge_index) != {r.key for r in schema.relations}:
            raise ValueError("relations do not match the schema")
        for nt in schema.node_types:
            if nt.name not in self.node_counts:
                raise ValueError(f"node type {nt.name!r} missing")
            x, c = self.node_features[nt.name], self.node_counts[nt.name]
            if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != nt.num_features:
                raise ValueError(f"node features {nt.name!r}: bad dtype/shape {x.dtype}{x.shape}")
            if structure_checked:
                continue
            if c.shape != (g,) or (c < 0).any() or int(c.sum()) != x.shape[0]:
                raise ValueError(f"node counts {nt.name!r} do not match features")
            if not np.isfinite(x).all():
                raise ValueError(f"node features {nt.name!r} are not finite")
        for head in schema.action_heads:
            if head.node_type is not None and (self.node_counts[head.node_type] != head.size).any():
                raise ValueError(f"pointer head {head.name!r} needs {head.size} {head.node_type} nodes")
        if structure_checked:
            return
        for rel in schema.relations:
            e, counts = self.edge_index[rel.key], self.edge_counts.get(rel.key)
            if counts is None or counts.shape != (g,) or (counts < 0).any():
                raise ValueError(f"edge counts {rel.key} malformed")
            if e.dtype != np.int32 or e.ndim != 2 or e.shape[0] != 2 or e.shape[1] != int(counts.sum()):
                raise ValueError(f"edge index {rel.key}: bad dtype/shape {e.dtype}{e.shape}")
            # Every local index must address a node of its own graph.
            src_n = np.repeat(self.node_counts[rel.src], counts)
            dst_n = np.repeat(self.node_counts[rel.dst], counts)
            if e.size and ((e < 0).any() or (e[0] >= src_n).any() or (e[1] >= dst_n).any()):
                raise ValueError(f"edge index {rel.key} out of range")

    def equals(self, other: PackedGraphs) -> bool:
        def same(a: dict, b: dict) -> bool:
            return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

        return (
            same(self.node_features, other.node_features)
            and same(self.node_counts, other.node_counts)
            and same(self.edge_index, other.edge_index)
            and same(self.edge_counts, other.edge_counts)
        )

    @staticmethod
    def concat(parts: Sequence[PackedGraphs]) -> PackedGraphs:
        """Stack several PackedGraphs (same schema) into one; indices stay local."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        return PackedGraphs(
            node_features={k: np.concatenate([p.node_features[k] for p in parts]) for k in first.node_features},
            node_counts={k: np.concatenate([p.node_counts[k] for p in parts]) for k in first.node_counts},
            edge_index={k: np.concatenate([p.edge_index[k] for p in parts], axis=1) for k in first.edge_index},
            edge_counts={k: np.concatenate([p.edge_counts[k] for p in parts]) for k in first.edge_counts},
        )

    def select(self, graph_ids: np.ndarray) -> PackedGraphs:
        """The graphs at ``graph_ids`` (in that order), as a new PackedGraphs."""
        graph_ids = np.asarray(graph_ids, dtype=np.int64)
        return PackedGraphs(
            node_features={
                k: self.node_features[k][_rows_of(self.node_counts[k], graph_ids)] for k in self.node_features
            },
            node_counts={k: self.node_counts[k][graph_ids] for k in self.node_counts},
            edge_index={k: self.edge_index[k][:, _rows_of(self.edge_counts[k], graph_ids)] for k in self.edge_index},
            edge_counts={k: self.edge_counts[k][graph_ids] for k in self.edge_counts},
        )

    def split(self, sizes: Sequence[int]) -> list[PackedGraphs]:
        """Consecutive pieces of ``sizes[i]`` graphs each (summing to all of them), as views, no copies: the
        offsets are computed once for all pieces, where ``select`` per piece would redo them each time."""
        bounds = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        if bounds[-1] != self.num_graphs:
            raise ValueError(f"pieces of {bounds[-1]} graphs from {self.num_graphs}")

        def starts(counts: np.ndarray) -> np.ndarray:
            ptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            return ptr[bounds]

        nodes = {k: starts(c) for k, c in self.node_counts.items()}
        edges = {k: starts(c) for k, c in self.edge_counts.items()}
        return [
            PackedGraphs(
                node_features={k: x[nodes[k][i] : nodes[k][i + 1]] for k, x in self.node_features.items()},
                node_counts={k: c[bounds[i] : bounds[i + 1]] for k, c in self.node_counts.items()},
                edge_index={k: e[:, edges[k][i] : edges[k][i + 1]] for k, e in self.edge_index.items()},
                edge_counts={k: c[bounds[i] : bounds[i + 1]] for k, c in self.edge_counts.items()},
            )
            for i in range(len(sizes))
        ]

    def nbytes(self) -> int:
        arrays = [*self.node_features.values(), *self.node_counts.values()]
        arrays += [*self.edge_index.values(), *self.edge_counts.values()]
        return int(sum(a.nbytes for a in arrays))


def _rows_of(counts: np.ndarray, graph_ids: np.ndarray) -> np.ndarray:
    """Row indices (into the stacked array) of the items belonging to ``graph_ids``, in order."""
    counts = counts.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sel_counts = counts[graph_ids]
    total = int(sel_counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # For each selected graph, a run start..start+count: built without a Python loop.
    run_starts = np.repeat(starts[graph_ids] - np.concatenate([[0], np.cumsum(sel_counts)[:-1]]), sel_counts)
    return run_starts + np.arange(total, dtype=np.int64)


def single_graph(node_features: dict[str, np.ndarray], edges: dict[RelationKey, np.ndarray]) -> PackedGraphs:
    """Build a G=1 PackedGraphs from per-type features and per-relation ``[2, E]`` local edges."""
    return PackedGraphs(
        node_features={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in node_features.items()},
        node_counts={k: np.array([v.shape[0]], dtype=np.int32) for k, v in node_features.items()},
        edge_index={k: np.ascontiguousarray(v, dtype=np.int32).reshape(2, -1) for k, v in edges.items()},
        edge_counts={k: np.array([np.asarray(v).reshape(2, -1).shape[1]], dtype=np.int32) for k, v in edges.items()},
    )
