"""Numpy arrays <-> `GraphState` / `Trajectory` as packed little-endian bytes.

Encoding is one ``tobytes`` per array; decoding is one ``np.frombuffer`` per
array (read-only views into the message's bytes, no copies, no per-element
loops).  Decoding checks every byte length against the counts it implies, so
a malformed message raises `InvalidFieldError` instead of producing arrays of
the wrong shape.
"""

from __future__ import annotations

import numpy as np

from tamiyo.contracts.errors import InvalidFieldError, NonFiniteError
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.unroll import Unroll

F32 = np.dtype("<f4")
I32 = np.dtype("<i4")
I64 = np.dtype("<i8")
U8 = np.dtype("u1")


def _le(arr: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def _from(buf: bytes, dtype: np.dtype, count: int, what: str) -> np.ndarray:
    if len(buf) != count * dtype.itemsize:
        raise InvalidFieldError(f"{what}: {len(buf)} bytes, expected {count} x {dtype.itemsize}")
    # astype to the native dtype is free on little-endian machines and keeps dtype checks simple.
    return np.frombuffer(buf, dtype=dtype, count=count).astype(dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------- graphs


def graphs_to_proto(graphs: PackedGraphs, schema_name: str = "") -> pb.GraphState:
    msg = pb.GraphState(schema_name=schema_name, num_graphs=graphs.num_graphs)
    for node_type, feats in graphs.node_features.items():
        msg.nodes.add(
            node_type=node_type,
            num_features=int(feats.shape[1]),
            features=_le(feats, F32),
            counts=_le(graphs.node_counts[node_type], I32),
        )
    for (src, rel, dst), index in graphs.edge_index.items():
        msg.edges.add(
            src_type=src,
            relation=rel,
            dst_type=dst,
            index=_le(index, I32),
            counts=_le(graphs.edge_counts[(src, rel, dst)], I32),
        )
    return msg


def graphs_from_proto(msg: pb.GraphState) -> PackedGraphs:
    """Decode and structurally validate (sizes, local index ranges, finite features)."""
    g = int(msg.num_graphs)
    if g == 0 and not msg.nodes:
        raise InvalidFieldError("graph state holds no graphs")
    node_features: dict[str, np.ndarray] = {}
    node_counts: dict[str, np.ndarray] = {}
    for block in msg.nodes:
        if block.node_type in node_features:
            raise InvalidFieldError(f"node type {block.node_type!r} appears twice")
        counts = _from(block.counts, I32, g, f"node counts {block.node_type!r}")
        if g and counts.min() < 0:
            raise InvalidFieldError(f"negative node count for {block.node_type!r}")
        n, f = int(counts.sum()), int(block.num_features)
        feats = _from(block.features, F32, n * f, f"node features {block.node_type!r}").reshape(n, f)
        if not np.isfinite(feats).all():
            raise NonFiniteError(f"node features {block.node_type!r} are not finite")
        node_features[block.node_type] = feats
        node_counts[block.node_type] = counts
    edge_index: dict[tuple[str, str, str], np.ndarray] = {}
    edge_counts: dict[tuple[str, str, str], np.ndarray] = {}
    for edges in msg.edges:
        key = (edges.src_type, edges.relation, edges.dst_type)
        if key in edge_index:
            raise InvalidFieldError(f"relation {key} appears twice")
        if edges.src_type not in node_counts or edges.dst_type not in node_counts:
            raise InvalidFieldError(f"relation {key} names a node type that is not present")
        counts = _from(edges.counts, I32, g, f"edge counts {key}")
        if g and counts.min() < 0:
            raise InvalidFieldError(f"negative edge count for {key}")
        e = int(counts.sum())
        index = _from(edges.index, I32, 2 * e, f"edge index {key}").reshape(2, e)
        if e and (
            index.min() < 0
            or _beyond(index[0], node_counts[edges.src_type], counts)
            or _beyond(index[1], node_counts[edges.dst_type], counts)
        ):
            raise InvalidFieldError(f"edge index {key} points outside its graph")
        edge_index[key] = index
        edge_counts[key] = counts
    return PackedGraphs(node_features, node_counts, edge_index, edge_counts)


def _beyond(local: np.ndarray, nodes_per_graph: np.ndarray, edges_per_graph: np.ndarray) -> bool:
    """True if some local index is >= the node count of its own graph."""
    lo, hi = int(nodes_per_graph.min()), int(nodes_per_graph.max())
    if lo == hi:  # the common case (fixed-shape env graphs): one comparison against a scalar
        return int(local.max()) >= hi
    return bool((local >= np.repeat(nodes_per_graph, edges_per_graph)).any())


# ---------------------------------------------------------------- trajectories


def unroll_to_proto(unroll: Unroll, schema_name: str = "") -> pb.Trajectory:
    t = unroll.length
    masks = np.ascontiguousarray(unroll.action_masks, dtype=bool)
    msg = pb.Trajectory(
        actor_id=unroll.actor_id,
        sequence=unroll.sequence,
        env_id=unroll.env_id,
        schema_name=schema_name,
        length=t,
        num_heads=int(unroll.actions.shape[1]),
        joint_action_count=int(masks.shape[1]),
        actions=_le(unroll.actions, I32),
        action_masks=np.packbits(masks, axis=None).tobytes(),
        behaviour_log_probs=_le(unroll.behaviour_log_probs, F32),
        rewards=_le(unroll.rewards, F32),
        terminated=_le(unroll.terminated, U8),
        truncated=_le(unroll.truncated, U8),
        policy_versions=_le(unroll.policy_versions, I64),
        episode_returns=_le(unroll.episode_returns, F32),
    )
    msg.graphs.CopyFrom(graphs_to_proto(unroll.graphs, schema_name))
    if unroll.final_graphs is not None and unroll.final_graphs.num_graphs:
        msg.final_graphs.CopyFrom(graphs_to_proto(unroll.final_graphs, schema_name))
    return msg


def _bools(buf: bytes, count: int, what: str) -> np.ndarray:
    raw = _from(buf, U8, count, what)
    if (raw > 1).any():
        raise InvalidFieldError(f"{what} holds values other than 0/1")
    return raw.astype(bool)


def unroll_from_proto(msg: pb.Trajectory) -> Unroll:
    """Decode and validate everything that can be checked without the env's schema."""
    t, h, m = int(msg.length), int(msg.num_heads), int(msg.joint_action_count)
    if t < 1 or h < 1 or m < 1:
        raise InvalidFieldError(f"trajectory length/heads/actions must be positive (T={t}, H={h}, M={m})")
    masks_bits = np.frombuffer(msg.action_masks, dtype=U8)
    if masks_bits.size != (t * m + 7) // 8:
        raise InvalidFieldError("action mask byte length does not match T x M")
    masks = np.unpackbits(masks_bits, count=t * m).astype(bool).reshape(t, m)
    logp = _from(msg.behaviour_log_probs, F32, t, "behaviour_log_probs")
    rewards = _from(msg.rewards, F32, t, "rewards")
    if not (np.isfinite(logp).all() and np.isfinite(rewards).all()):
        raise NonFiniteError("rewards or behaviour log-probs are not finite")
    if (logp > 1e-4).any():
        raise InvalidFieldError("a behaviour log-prob is positive")
    returns_buf = msg.episode_returns
    if len(returns_buf) % 4:
        raise InvalidFieldError("episode_returns byte length is not a multiple of 4")
    episode_returns = _from(returns_buf, F32, len(returns_buf) // 4, "episode_returns")
    if not np.isfinite(episode_returns).all():
        raise NonFiniteError("episode returns are not finite")
    terminated = _bools(msg.terminated, t, "terminated")
    truncated = _bools(msg.truncated, t, "truncated")
    if (terminated & truncated).any():
        raise InvalidFieldError("a step is both terminated and truncated")
    graphs = graphs_from_proto(msg.graphs)
    if graphs.num_graphs != t + 1:
        raise InvalidFieldError(f"trajectory has {graphs.num_graphs} graphs, expected {t + 1}")
    n_trunc = int(truncated.sum())
    final_graphs = None
    if msg.HasField("final_graphs"):
        final_graphs = graphs_from_proto(msg.final_graphs)
    if (final_graphs.num_graphs if final_graphs is not None else 0) != n_trunc:
        raise InvalidFieldError("need exactly one final graph per truncated step")
    return Unroll(
        graphs=graphs,
        actions=_from(msg.actions, I32, t * h, "actions").reshape(t, h),
        action_masks=masks,
        behaviour_log_probs=logp,
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        final_graphs=final_graphs,
        policy_versions=_from(msg.policy_versions, I64, t, "policy_versions"),
        actor_id=msg.actor_id,
        sequence=int(msg.sequence),
        env_id=msg.env_id,
        episode_returns=episode_returns,
    )


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(np.ascontiguousarray(mask, dtype=bool), axis=None).tobytes()


def unpack_mask(buf: bytes, count: int) -> np.ndarray:
    bits = np.frombuffer(buf, dtype=U8)
    if bits.size != (count + 7) // 8:
        raise InvalidFieldError("action mask byte length does not match its count")
    return np.unpackbits(bits, count=count).astype(bool)
