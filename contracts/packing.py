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
    return _joined([buf], dtype, [count], [what])


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
    """Decode and structurally validate (sizes, local index ranges, finite features).

    Every check runs over all node types and all relations at once: the counts of every block are one
    array, the features of every node type one buffer, the edge indices of every relation one buffer
    (joined bytes, one ``np.frombuffer`` each; the per-type and per-relation arrays are views into them).
    Per-block numpy calls were most of the replay's and the learner's decode time (a host graph set has 4
    node types and 14 relations, ~150 small numpy calls per trajectory): the graphs of a T=20 host-sim unroll
    took ~180 us to decode and now take ~110 us (`bench/contracts.py` prints the whole trajectory's).
    Only when a check fails are the blocks looked at one by one, to name the culprit."""
    g = int(msg.num_graphs)
    if g == 0 and not msg.nodes:
        raise InvalidFieldError("graph state holds no graphs")
    if not msg.nodes:  # graphs of nothing: refused here (later code reads the graph count off a node type)
        raise InvalidFieldError("graph state holds no node types")
    nodes, edges = list(msg.nodes), list(msg.edges)
    types = [b.node_type for b in nodes]
    if len(set(types)) != len(types):
        raise InvalidFieldError(f"node type {_first_repeat(types)!r} appears twice")
    keys = [(e.src_type, e.relation, e.dst_type) for e in edges]
    if len(set(keys)) != len(keys):
        raise InvalidFieldError(f"relation {_first_repeat(keys)} appears twice")
    missing = next((k for k in keys if k[0] not in types or k[2] not in types), None)
    if missing is not None:
        raise InvalidFieldError(f"relation {missing} names a node type that is not present")
    names = [f"node counts {t!r}" for t in types] + [f"edge counts {k}" for k in keys]
    counts = _joined([b.counts for b in nodes] + [e.counts for e in edges], I32, [g] * len(names), names)
    counts = counts.reshape(len(names), g)
    if g and len(names) and counts.min() < 0:
        row = int(np.flatnonzero(counts.min(axis=1) < 0)[0])
        what = f"node count for {types[row]!r}" if row < len(types) else f"edge count for {keys[row - len(types)]}"
        raise InvalidFieldError(f"negative {what}")
    totals = counts.sum(axis=1).tolist()
    node_totals, edge_totals = totals[: len(types)], totals[len(types) :]
    widths = [int(b.num_features) for b in nodes]
    sizes = [n * f for n, f in zip(node_totals, widths, strict=True)]
    feats = _joined([b.features for b in nodes], F32, sizes, [f"node features {t!r}" for t in types])
    if not np.isfinite(feats).all():
        bad = next(t for t, x in _split(feats, sizes, types) if not np.isfinite(x).all())
        raise NonFiniteError(f"node features {bad!r} are not finite")
    pieces = zip(_split(feats, sizes, types), node_totals, widths, strict=True)
    node_features = {t: x.reshape(n, f) for (t, x), n, f in pieces}
    node_counts = {t: counts[i] for i, t in enumerate(types)}
    lengths = [2 * e for e in edge_totals]
    index = _joined([e.index for e in edges], I32, lengths, [f"edge index {k}" for k in keys])
    edge_index = {k: x.reshape(2, -1) for k, x in _split(index, lengths, keys)}
    edge_counts = {k: counts[len(types) + i] for i, k in enumerate(keys)}
    if edge_index:
        _check_edges(node_counts, edge_index, edge_counts, g, index)
    return PackedGraphs(node_features, node_counts, edge_index, edge_counts)


def _first_repeat(items: list) -> object:
    seen: set = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _joined(buffers: list[bytes], dtype: np.dtype, counts: list[int], what: list[str]) -> np.ndarray:
    """The buffers, each checked to hold its count of ``dtype``, as one array (one copy, one ``frombuffer``)."""
    for buf, count, name in zip(buffers, counts, what, strict=True):
        if len(buf) != count * dtype.itemsize:
            raise InvalidFieldError(f"{name}: {len(buf)} bytes, expected {count} x {dtype.itemsize}")
    # astype to the native dtype is free on little-endian machines and keeps dtype checks simple.
    return np.frombuffer(b"".join(buffers), dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


def _split(flat: np.ndarray, sizes: list[int], names: list) -> list[tuple]:
    """(name, view) for consecutive pieces of ``flat`` of the given sizes."""
    out, start = [], 0
    for name, size in zip(names, sizes, strict=True):
        out.append((name, flat[start : start + size]))
        start += size
    return out


def _check_edges(
    node_counts: dict[str, np.ndarray],
    edge_index: dict[tuple[str, str, str], np.ndarray],
    edge_counts: dict[tuple[str, str, str], np.ndarray],
    g: int,
    joined: np.ndarray,
) -> None:
    """Every local index inside its own graph, for all relations at once (edge counts are checked >= 0
    before).  ``joined``: every relation's [2, E] index, flattened and concatenated in ``edge_index`` order."""
    # Node types whose graphs all have the same node count (every env graph): one bound per relation end,
    # so one comparison of the joined indices against their repeated bounds checks them all.
    fixed: dict[str, int] = {}
    if g:
        rows = np.stack(list(node_counts.values()))
        same = (rows == rows[:, :1]).all(axis=1).tolist()
        fixed = {t: int(c[0]) for (t, c), s in zip(node_counts.items(), same, strict=True) if s}
    if all(k[0] in fixed and k[2] in fixed for k in edge_index):
        bounds = [b for k in edge_index for b in (fixed[k[0]], fixed[k[2]])]
        lengths = [e.shape[1] for e in edge_index.values() for _ in range(2)]
        if joined.size and (joined.min() < 0 or (joined >= np.repeat(bounds, lengths)).any()):
            bad = next(k for k in edge_index if _outside(edge_index[k], node_counts, edge_counts[k], k))
            raise InvalidFieldError(f"edge index {bad} points outside its graph")
        return
    for key in edge_index:
        if _outside(edge_index[key], node_counts, edge_counts[key], key):
            raise InvalidFieldError(f"edge index {key} points outside its graph")


def _outside(
    index: np.ndarray, node_counts: dict[str, np.ndarray], counts: np.ndarray, key: tuple[str, str, str]
) -> bool:
    """True if some local index of relation ``key`` is negative or >= the node count of its own graph."""
    if not index.shape[1]:
        return False
    if index.min() < 0:
        return True
    src = np.repeat(node_counts[key[0]], counts)
    dst = np.repeat(node_counts[key[2]], counts)
    return bool((index[0] >= src).any() or (index[1] >= dst).any())


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
