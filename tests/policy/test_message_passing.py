"""The fused SAGE layers (one scatter for acting, grouped per relation for learning) give what PyG's HeteroConv of
SAGEConvs gives on the same weights (values and gradients, to 1e-5), on real schemas, graphs of varying size,
relations without edges and nodes without neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import HeteroConv, SAGEConv

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_graphs
from tamiyo.policy.batching import collate
from tamiyo.policy.message_passing import FusedSage
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.snapshot import encode_snapshot, network_from_snapshot
from tamiyo.producers.envs import make_env


def _hetero_sage(schema, hidden: int, seed: int) -> HeteroConv:
    torch.manual_seed(seed)
    conv = HeteroConv({r.key: SAGEConv((hidden, hidden), hidden) for r in schema.relations}, aggr="sum")
    with torch.no_grad():  # PyG zero-inits nothing here, but make every bias matter
        for p in conv.parameters():
            p.uniform_(-0.5, 0.5)
    return conv


def _without_edges(packed: PackedGraphs, relation) -> PackedGraphs:
    packed.edge_index[relation] = np.zeros((2, 0), np.int32)
    packed.edge_counts[relation] = np.zeros_like(packed.edge_counts[relation])
    return packed


@pytest.mark.parametrize("path", ["fused", "grouped"])
@pytest.mark.parametrize("num_graphs", [1, 7, 64])
def test_one_fused_layer_equals_heteroconv(num_graphs, path):
    schema = host_schema(3, 4)
    packed = _without_edges(
        random_graphs(schema, num_graphs, np.random.default_rng(num_graphs)), schema.relations[2].key
    )
    graph = collate(packed)
    conv = _hetero_sage(schema, 8, seed=num_graphs)
    rng = torch.Generator().manual_seed(0)
    hs = {t: torch.randn(x.shape[0], 8, generator=rng, requires_grad=True) for t, x in graph.x.items()}
    fused = FusedSage([nt.name for nt in schema.node_types], [r.key for r in schema.relations])
    want = conv(hs, graph.edge_index)
    if path == "fused":
        got = fused.forward(conv, hs, fused.plan(graph.x, graph.edge_index))
    else:
        got = fused.forward_grouped(conv, hs, graph.edge_index, fused.inverse_degrees(graph.x, graph.edge_index))
    assert got.keys() == want.keys()
    for t in want:
        torch.testing.assert_close(got[t], want[t], atol=1e-5, rtol=1e-5)
    # Gradients reach the same weights and node states.
    grads_want = torch.autograd.grad(sum((v * v).sum() for v in want.values()), [*conv.parameters(), *hs.values()])
    grads_got = torch.autograd.grad(sum((v * v).sum() for v in got.values()), [*conv.parameters(), *hs.values()])
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("layers", [("sage",), ("sage", "gatv2"), ("sage", "sage")])
def test_the_network_is_the_same_fused_or_not(layers):
    env = make_env("host-sim", seed=2)
    graphs = PackedGraphs.concat([env.reset(seed=s).graph for s in range(12)])
    torch.manual_seed(5)
    model = TamiyoGNN(env.schema, ModelConfig(hidden=16, layers=layers))
    batch = collate(graphs)
    with torch.no_grad():  # acting: the one-scatter fused layer
        fused = model(batch)
    grouped = model(batch)  # with gradients (the learner): the grouped layer
    model.torso.fuse_sage = False
    plain = model(batch)
    for out in (fused, grouped):
        for a, b in zip([*out.logits, out.value], [*plain.logits, plain.value], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # The learner's gradients through the whole network, grouped against HeteroConv.
    weights = [torch.randn_like(t) for t in (*plain.logits, plain.value)]
    grads = []
    for out in (grouped, plain):
        loss = sum((t * w).sum() for t, w in zip((*out.logits, out.value), weights, strict=True))
        grads.append(torch.autograd.grad(loss, list(model.parameters()), allow_unused=True))
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_snapshots_load_into_either_path_with_the_same_outputs():
    schema = env_schema("host-sim")
    graphs = collate(random_graphs(schema, 9, np.random.default_rng(1)))
    torch.manual_seed(3)
    plain = TamiyoGNN(schema, ModelConfig(hidden=16, layers=("sage",)))
    plain.torso.fuse_sage = False
    snap = encode_snapshot(plain, version=1)
    loaded, _ = network_from_snapshot(snap.weights, snap.config_json)
    assert loaded.torso.fuse_sage
    assert loaded.state_dict().keys() == plain.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(loaded(graphs).value, plain(graphs).value, atol=1e-5, rtol=1e-5)


def test_a_schema_without_relations_has_nothing_to_fuse():
    schema = env_schema("gym:CartPole-v1")
    fused = FusedSage([nt.name for nt in schema.node_types], [])
    assert fused.receivers == [] and fused.width == {}


def test_the_fused_path_is_taken_only_where_it_was_measured_faster(monkeypatch):
    env = make_env("host-sim", seed=2)
    model = TamiyoGNN(env.schema, ModelConfig(hidden=8, layers=("sage",)))
    calls = []
    real = model.torso.fused.forward
    monkeypatch.setattr(model.torso.fused, "forward", lambda *a: calls.append(1) or real(*a))
    small = collate(PackedGraphs.concat([env.reset(seed=s).graph for s in range(3)]))
    model(small)  # with gradients: PyG's path
    assert calls == []
    with torch.no_grad():
        model(small)
        assert calls == [1]
        model.torso.fuse_max_graphs = 2  # beyond the limit: PyG's path again
        model(small)
        assert calls == [1]
