"""Random, contract-valid graphs, masks and unrolls of any `GraphSchema` (tests and benchmarks).

Use them with the real schemas (`env_schemas.env_schema`, `host_schema.host_schema`): the node
counts of non-pointer node types vary per graph here, which exercises batching more than an env does.
"""

from __future__ import annotations

import numpy as np

from tamiyo.contracts.graph import GraphSchema, PackedGraphs
from tamiyo.contracts.unroll import Unroll


def random_graphs(schema: GraphSchema, num_graphs: int, rng: np.random.Generator, max_nodes: int = 8) -> PackedGraphs:
    """``num_graphs`` random graphs of ``schema``: pointer-head node types get exactly their head
    size, the global type one node, other types 1..max_nodes nodes; random edges per relation."""
    fixed = {h.node_type: h.size for h in schema.action_heads if h.node_type is not None}
    fixed[schema.global_node_type] = 1
    counts: dict[str, np.ndarray] = {}
    feats: dict[str, np.ndarray] = {}
    for nt in schema.node_types:
        if nt.name in fixed:
            c = np.full(num_graphs, fixed[nt.name], dtype=np.int32)
        else:
            c = rng.integers(1, max_nodes + 1, size=num_graphs).astype(np.int32)
        counts[nt.name] = c
        feats[nt.name] = rng.standard_normal((int(c.sum()), nt.num_features)).astype(np.float32)
    edges: dict = {}
    ecounts: dict = {}
    for rel in schema.relations:
        ns, nd = counts[rel.src].astype(np.int64), counts[rel.dst].astype(np.int64)
        ec = rng.integers(0, 2 * np.maximum(ns, nd) + 1).astype(np.int32)
        # Local indices drawn uniformly below each graph's own node count.
        src = np.floor(rng.random(int(ec.sum())) * np.repeat(ns, ec)).astype(np.int32)
        dst = np.floor(rng.random(int(ec.sum())) * np.repeat(nd, ec)).astype(np.int32)
        edges[rel.key] = np.stack([src, dst])
        ecounts[rel.key] = ec
    return PackedGraphs(node_features=feats, node_counts=counts, edge_index=edges, edge_counts=ecounts)


def random_joint_masks(schema: GraphSchema, n: int, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """bool [n, M] joint masks with holes; action 0 of every head is always allowed (like WAIT)."""
    masks = rng.random((n, schema.joint_action_count)) < p
    masks[:, 0] = True
    return masks


def random_unroll(
    schema: GraphSchema,
    length: int,
    rng: np.random.Generator,
    p_terminated: float = 0.1,
    p_truncated: float = 0.05,
    policy_version: int = 0,
) -> Unroll:
    """A contract-valid `Unroll` with random graphs, masks, allowed actions and episode ends."""
    masks = random_joint_masks(schema, length, rng)
    # Pick a uniformly random allowed joint action per step.
    flat = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
    actions = np.stack(np.unravel_index(flat, schema.head_sizes), axis=1).astype(np.int32)
    ends = rng.random(length)
    terminated = ends < p_terminated
    truncated = (~terminated) & (ends < p_terminated + p_truncated)
    n_trunc = int(truncated.sum())
    return Unroll(
        graphs=random_graphs(schema, length + 1, rng),
        actions=actions,
        action_masks=masks,
        behaviour_log_probs=(-rng.random(length) * 3.0).astype(np.float32),
        rewards=rng.standard_normal(length).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        final_graphs=random_graphs(schema, n_trunc, rng) if n_trunc else None,
        policy_versions=np.full(length, policy_version, dtype=np.int64),
    )
