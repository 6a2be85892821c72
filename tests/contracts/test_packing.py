"""Packed-array graphs and trajectories: exact round trips, and malformed arrays refused."""

from __future__ import annotations

import numpy as np
import pytest

from tamiyo.contracts import codec, errors
from tamiyo.contracts.examples import EXAMPLE_SCHEMA, example_graph, example_unroll
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.packing import graphs_from_proto, graphs_to_proto, unroll_from_proto, unroll_to_proto


def _assert_unrolls_equal(a, b):
    assert a.graphs.equals(b.graphs)
    names = ("actions", "action_masks", "behaviour_log_probs", "rewards", "terminated", "truncated")
    for name in (*names, "policy_versions", "episode_returns"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.final_graphs is None) == (b.final_graphs is None)
    if a.final_graphs is not None:
        assert a.final_graphs.equals(b.final_graphs)
    assert (a.actor_id, a.sequence, a.env_id) == (b.actor_id, b.sequence, b.env_id)


def test_graphs_round_trip_exactly():
    rng = np.random.default_rng(0)
    g = PackedGraphs.concat([example_graph(rng, layers=n) for n in (2, 5, 3)])
    g.validate(EXAMPLE_SCHEMA)
    back = graphs_from_proto(graphs_to_proto(g, "s"))
    assert back.equals(g)
    assert back.num_graphs == 3


@pytest.mark.parametrize("truncate_at", [None, 0, 7, 19])
def test_unroll_round_trips_exactly_through_an_envelope(truncate_at):
    rng = np.random.default_rng(1)
    u = example_unroll(rng, truncate_at=truncate_at)
    u.validate(EXAMPLE_SCHEMA)
    data = codec.encode_envelope(unroll_to_proto(u, EXAMPLE_SCHEMA.name), source="t", producer_id="a", sequence=3)
    back = unroll_from_proto(codec.decode_envelope(data).payload)
    back.validate(EXAMPLE_SCHEMA)
    _assert_unrolls_equal(u, back)


def test_select_and_concat_are_inverse():
    rng = np.random.default_rng(2)
    parts = [example_graph(rng, layers=n) for n in (2, 4, 3, 5)]
    g = PackedGraphs.concat(parts)
    assert g.select(np.array([2])).equals(parts[2])
    assert g.select(np.array([3, 0])).equals(PackedGraphs.concat([parts[3], parts[0]]))


def _trajectory():
    return unroll_to_proto(example_unroll(np.random.default_rng(3), truncate_at=4), "s")


def _cut_rewards(m):
    m.rewards = m.rewards[:-4]


def _lengthen(m):
    m.length += 1


def _non_bool_flag(m):
    m.terminated = b"\x02" + m.terminated[1:]


def _nan_rewards(m):
    m.rewards = np.full(20, np.nan, np.float32).tobytes()


def _drop_final_graphs(m):
    m.ClearField("final_graphs")


def _short_features(m):
    m.graphs.nodes[0].features = m.graphs.nodes[0].features[:-4]


def _edges_out_of_range(m):
    m.graphs.edges[0].index = np.full(len(m.graphs.edges[0].index) // 4, 99, np.int32).tobytes()


def _inf_features(m):
    m.graphs.nodes[1].features = np.full(len(m.graphs.nodes[1].features) // 4, np.inf, np.float32).tobytes()


@pytest.mark.parametrize(
    ("mutate", "err"),
    [
        (_cut_rewards, errors.InvalidFieldError),
        (_lengthen, errors.InvalidFieldError),
        (_non_bool_flag, errors.InvalidFieldError),
        (_nan_rewards, errors.NonFiniteError),
        (_drop_final_graphs, errors.InvalidFieldError),
        (_short_features, errors.InvalidFieldError),
        (_edges_out_of_range, errors.InvalidFieldError),
        (_inf_features, errors.NonFiniteError),
    ],
)
def test_inconsistent_arrays_are_refused(mutate, err):
    msg = _trajectory()
    mutate(msg)
    with pytest.raises(err):
        unroll_from_proto(msg)
    with pytest.raises(err):
        codec.decode_envelope(codec.encode_envelope(msg, source="t", producer_id="a", sequence=0))


def test_schema_validation_catches_a_masked_taken_action():
    u = example_unroll(np.random.default_rng(4))
    u.action_masks[:] = False
    with pytest.raises(ValueError, match="masked"):
        u.validate(EXAMPLE_SCHEMA)


def test_schema_round_trips_through_json():
    assert type(EXAMPLE_SCHEMA).from_json(EXAMPLE_SCHEMA.to_json()) == EXAMPLE_SCHEMA


def test_split_gives_the_pieces_select_gives():
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.contracts.random_unrolls import random_graphs

    graphs = random_graphs(env_schema("host-sim"), 12, np.random.default_rng(4))
    sizes = [3, 0, 5, 4]
    pieces = graphs.split(sizes)
    start = 0
    for size, piece in zip(sizes, pieces, strict=True):
        assert piece.equals(graphs.select(np.arange(start, start + size)))
        start += size
    with pytest.raises(ValueError, match="pieces"):
        graphs.split([3, 3])


def test_schema_checks_after_a_checked_decode_still_catch_what_the_schema_adds():
    """`validate(structure_checked=True)` skips only what graphs_from_proto checked: node types, widths, relations
    and pointer-head counts are still checked against the schema."""
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, Relation
    from tamiyo.contracts.random_unrolls import random_graphs

    schema = env_schema("host-sim")
    graphs = graphs_from_proto(graphs_to_proto(random_graphs(schema, 5, np.random.default_rng(2))))
    graphs.validate(schema, structure_checked=True)
    wider = GraphSchema(
        schema.name, tuple(NodeType(n.name, n.num_features + (n.name == "slot")) for n in schema.node_types),
        schema.relations, schema.action_heads,
    )  # fmt: skip
    fewer = GraphSchema(schema.name, schema.node_types, schema.relations[1:], schema.action_heads)
    more_slots = GraphSchema(
        schema.name, schema.node_types, schema.relations,
        (schema.action_heads[0], ActionHead("slot", 4, "slot"), schema.action_heads[2]),
    )  # fmt: skip
    extra = GraphSchema(
        schema.name, (*schema.node_types, NodeType("extra", 2)),
        (*schema.relations, Relation("extra", "to", "global")), schema.action_heads,
    )  # fmt: skip
    for other, message in ((wider, "bad dtype/shape"), (fewer, "relations"), (more_slots, "pointer head"),
                           (extra, "node types")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            graphs.validate(other, structure_checked=True)


def test_a_corrupt_edge_index_names_its_relation():
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.contracts.random_unrolls import random_graphs

    schema = env_schema("host-sim")
    msg = graphs_to_proto(random_graphs(schema, 4, np.random.default_rng(3)))
    block = next(b for b in msg.edges if b.relation == "fits" and len(b.index))
    index = np.frombuffer(block.index, dtype="<i4").copy()
    index[0] = 99
    block.index = index.tobytes()
    with pytest.raises(errors.InvalidFieldError, match="fits"):
        graphs_from_proto(msg)
    index[0] = -1
    block.index = index.tobytes()
    with pytest.raises(errors.InvalidFieldError, match="fits"):
        graphs_from_proto(msg)
