"""`graphs_from_proto` (every block's counts, features and indices checked at once, over joined buffers)
against a straightforward reference that decodes and checks one block at a time: on valid messages and on
messages with one or more fields made hostile, both accept with equal graphs or both refuse.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tamiyo.contracts.errors import InvalidFieldError, LeylineError, NonFiniteError
from tamiyo.contracts.examples import example_graph
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.packing import graphs_from_proto, graphs_to_proto
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.producers.sample_unrolls import host_sim_unrolls


def _array(buf: bytes, dtype: str, count: int) -> np.ndarray:
    if len(buf) != count * np.dtype(dtype).itemsize:
        raise InvalidFieldError("wrong byte length")
    return np.frombuffer(buf, dtype=dtype).astype(np.dtype(dtype).newbyteorder("="))


def reference_decode(msg: pb.GraphState) -> PackedGraphs:
    """One block at a time, every check spelled out (the decoder before it was vectorised)."""
    g = int(msg.num_graphs)
    if not msg.nodes:
        raise InvalidFieldError("no node types")
    feats: dict[str, np.ndarray] = {}
    node_counts: dict[str, np.ndarray] = {}
    for block in msg.nodes:
        if block.node_type in feats:
            raise InvalidFieldError("type twice")
        counts = _array(block.counts, "<i4", g)
        if (counts < 0).any():
            raise InvalidFieldError("negative node count")
        n, f = int(counts.sum()), int(block.num_features)
        x = _array(block.features, "<f4", n * f).reshape(n, f)
        if not np.isfinite(x).all():
            raise NonFiniteError("features")
        feats[block.node_type], node_counts[block.node_type] = x, counts
    index: dict[tuple[str, str, str], np.ndarray] = {}
    edge_counts: dict[tuple[str, str, str], np.ndarray] = {}
    for edges in msg.edges:
        key = (edges.src_type, edges.relation, edges.dst_type)
        if key in index or edges.src_type not in node_counts or edges.dst_type not in node_counts:
            raise InvalidFieldError("relation")
        counts = _array(edges.counts, "<i4", g)
        if (counts < 0).any():
            raise InvalidFieldError("negative edge count")
        e = int(counts.sum())
        local = _array(edges.index, "<i4", 2 * e).reshape(2, e)
        owner = np.repeat(np.arange(g), counts)  # graph of every edge
        if (local < 0).any() or (local[0] >= node_counts[key[0]][owner]).any():
            raise InvalidFieldError("source outside its graph")
        if (local[1] >= node_counts[key[2]][owner]).any():
            raise InvalidFieldError("target outside its graph")
        index[key], edge_counts[key] = local, counts
    return PackedGraphs(feats, node_counts, index, edge_counts)


def _host_graphs() -> pb.GraphState:
    return graphs_to_proto(host_sim_unrolls(1, length=6)[0].graphs, "host-sim")


def _varied_graphs() -> pb.GraphState:  # graphs of different sizes: the per-graph bounds path
    rng = np.random.default_rng(0)
    return graphs_to_proto(PackedGraphs.concat([example_graph(rng, layers=n) for n in (2, 5, 3)]), "example")


BASES = (_host_graphs(), _varied_graphs())


@st.composite
def hostile(draw: st.DrawFn) -> pb.GraphState:
    msg = pb.GraphState()
    msg.CopyFrom(BASES[draw(st.integers(0, len(BASES) - 1))])
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["node", "edge", "graphs", "twice"]))
        if kind == "graphs":
            msg.num_graphs = draw(st.integers(0, msg.num_graphs + 2))
        elif kind == "twice":
            block = draw(st.sampled_from(list(msg.nodes) + list(msg.edges)))
            (msg.nodes if isinstance(block, pb.NodeBlock) else msg.edges).add().CopyFrom(block)
        else:
            blocks = msg.nodes if kind == "node" else msg.edges
            block = blocks[draw(st.integers(0, len(blocks) - 1))]
            field = draw(st.sampled_from(["counts", "features" if kind == "node" else "index", "type"]))
            if field == "type":
                if kind == "node":
                    block.node_type = draw(st.sampled_from(["global", "layer", "slot", "other"]))
                else:
                    block.dst_type = draw(st.sampled_from(["global", "layer", "slot", "other"]))
                continue
            dtype = "<f4" if field == "features" else "<i4"
            raw = getattr(block, field)
            values = np.frombuffer(raw[: len(raw) - len(raw) % 4], dtype=dtype).copy()
            how = draw(st.sampled_from(["cut", "set"] if values.size else ["cut"]))
            if how == "cut":
                setattr(block, field, raw[: draw(st.integers(0, max(0, len(raw) - 1)))])
            else:
                at = draw(st.integers(0, values.size - 1))
                if dtype == "<f4":
                    values[at] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, 0.0]))
                else:
                    values[at] = draw(st.integers(-3, 12))
                setattr(block, field, values.tobytes())
    return msg


def _outcome(decode, msg: pb.GraphState) -> PackedGraphs | type:
    try:
        return decode(msg)
    except LeylineError as err:
        return type(err)


@settings(max_examples=400, deadline=None)
@given(hostile())
def test_the_vectorised_decoder_agrees_with_the_reference(msg):
    got, want = _outcome(graphs_from_proto, msg), _outcome(reference_decode, msg)
    if isinstance(want, PackedGraphs):
        assert isinstance(got, PackedGraphs), f"refused a message the reference accepts: {got}"
        assert got.equals(want)
    else:
        assert not isinstance(got, PackedGraphs), f"accepted a message the reference refuses ({want.__name__})"


def test_one_hostile_field_is_refused_with_the_reference_error_type():
    msg = pb.GraphState()
    msg.CopyFrom(BASES[0])
    features = np.frombuffer(msg.nodes[1].features, dtype="<f4").copy()
    features[3] = np.nan
    msg.nodes[1].features = features.tobytes()
    assert _outcome(graphs_from_proto, msg) is NonFiniteError is _outcome(reference_decode, msg)
    msg.CopyFrom(BASES[0])
    index = np.frombuffer(msg.edges[-1].index, dtype="<i4").copy()
    index[0] = 11
    msg.edges[-1].index = index.tobytes()
    assert _outcome(graphs_from_proto, msg) is InvalidFieldError is _outcome(reference_decode, msg)


def test_graphs_without_node_types_are_refused():
    """num_graphs > 0 with no node blocks was accepted, and reading the graph count later raised
    StopIteration (found in review); it is refused at decode now."""
    msg = pb.GraphState(schema_name="host-sim", num_graphs=3)
    assert _outcome(graphs_from_proto, msg) is InvalidFieldError is _outcome(reference_decode, msg)
