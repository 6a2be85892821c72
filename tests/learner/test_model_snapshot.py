import json

import numpy as np
import pytest
import torch

from tamiyo.contracts.graph import ActionHead, GraphSchema, NodeType, PackedGraphs
from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_graphs
from tamiyo.policy.batching import collate
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.snapshot import encode_snapshot, network_from_snapshot, read_policy_file, write_snapshot

REPO_LEARNER = __import__("pathlib").Path(__file__).resolve().parents[2] / "learner"


def test_forward_shapes_follow_the_schema():
    schema = host_schema(3, 4)
    graphs = collate(random_graphs(schema, 7, np.random.default_rng(0)))
    out = TamiyoGNN(schema)(graphs)
    assert [tuple(lg.shape) for lg in out.logits] == [(7, 6), (7, 3), (7, 4)]
    assert out.value.shape == (7,)
    assert all(torch.isfinite(lg).all() for lg in out.logits)


def test_pointer_logits_follow_their_nodes():
    """Permuting the slot nodes of a graph (with their edges) permutes the slot logits the same way."""
    schema = host_schema(3, 3)
    torch.manual_seed(0)
    model = TamiyoGNN(schema).eval()
    packed = random_graphs(schema, 1, np.random.default_rng(3))
    perm = np.array([2, 0, 1])  # new slot i is old slot perm[i]
    inv = np.argsort(perm)
    moved = PackedGraphs(
        node_features={**packed.node_features, "slot": packed.node_features["slot"][perm]},
        node_counts=packed.node_counts,
        edge_index={k: v.copy() for k, v in packed.edge_index.items()},
        edge_counts=packed.edge_counts,
    )
    for (src, _, dst), e in moved.edge_index.items():
        if src == "slot":
            e[0] = inv[e[0]]
        if dst == "slot":
            e[1] = inv[e[1]]
    a, b = model(collate(packed)), model(collate(moved))
    torch.testing.assert_close(b.logits[1][0], a.logits[1][0][perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.value, a.value, atol=1e-5, rtol=1e-5)


def test_one_node_schema_without_relations():
    schema = GraphSchema("gym:X", (NodeType("global", 4),), (), (ActionHead("action", 2),))
    model = TamiyoGNN(schema)
    assert len(model.torso.convs) == 0
    packed = PackedGraphs({"global": np.ones((3, 4), np.float32)}, {"global": np.ones(3, np.int32)})
    out = model(collate(packed))
    assert out.logits[0].shape == (3, 2)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(hidden=32, layers=("gatv2",), separate_critic=True)])
def test_snapshot_round_trip_is_bit_identical(tmp_path, config):
    schema = host_schema(3, 3)
    torch.manual_seed(1)
    model = TamiyoGNN(schema, config)
    graphs = collate(random_graphs(schema, 16, np.random.default_rng(0)))
    snap = encode_snapshot(model, version=42)
    assert json.loads(snap.config_json)["version"] == 42 and len(snap.sha256) == 64
    torch.manual_seed(999)  # a different init must be fully overwritten
    loaded, version = network_from_snapshot(snap.weights, snap.config_json)
    assert version == 42 and loaded.schema == schema and loaded.config == config
    a, b = model(graphs), loaded(graphs)
    for x, y in zip(a.logits, b.logits, strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.value, b.value)
    write_snapshot(snap, tmp_path)
    again, _ = read_policy_file(tmp_path)
    assert torch.equal(again(graphs).value, a.value)


def test_snapshot_rejects_foreign_config():
    snap = encode_snapshot(TamiyoGNN(host_schema(3, 3)), 0)
    bad = json.loads(snap.config_json)
    bad["format"] = "something-else"
    with pytest.raises(ValueError):
        network_from_snapshot(snap.weights, json.dumps(bad))
    for not_an_object in ("[1, 2]", '"tamiyo-policy/1"', "7"):  # valid JSON, not a config object
        with pytest.raises(ValueError):
            network_from_snapshot(snap.weights, not_an_object)


def test_no_pickle_or_torch_load_in_the_learner():
    for path in REPO_LEARNER.glob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text and "import pickle" not in text and "pickle.load" not in text, path
