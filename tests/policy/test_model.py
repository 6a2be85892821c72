"""TamiyoGNN's pointer heads, computed per graph and broadcast, against the straightforward definition:
the head's MLP on ``cat([node state, context of the node's graph])`` for every node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.graph import PackedGraphs
from tamiyo.policy.batching import collate
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.producers.sample_unrolls import host_sim_unrolls


def _reference_logits(model: TamiyoGNN, graph) -> list[torch.Tensor]:
    hs, z = model.torso(graph)
    ctx = model.policy_trunk(z)
    out = []
    for head in model.schema.action_heads:
        if head.node_type is None:
            out.append(model.heads[head.name](ctx))
        else:
            nodes = hs[head.node_type]
            scores = model.heads[head.name](torch.cat([nodes, ctx[graph.batch[head.node_type]]], dim=-1))
            out.append(scores.view(graph.num_graphs, head.size))
    return out


@pytest.mark.parametrize("config", [ModelConfig(hidden=32, layers=("sage",)), ModelConfig(hidden=16)])
def test_pointer_heads_equal_the_concatenated_definition_values_and_gradients(config):
    torch.manual_seed(0)
    model = TamiyoGNN(env_schema("host-sim"), config)
    graphs = PackedGraphs.concat([u.graphs for u in host_sim_unrolls(3, length=5)])
    graph = collate(graphs.select(np.arange(graphs.num_graphs)))
    got = model(graph).logits
    want = _reference_logits(model, graph)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    weights = [torch.randn_like(w) for w in want]
    grads = []
    for logits in (got, want):
        model.zero_grad()
        sum((lg * wt).sum() for lg, wt in zip(logits, weights, strict=True)).backward(retain_graph=True)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_sharpening_multiplies_every_logit_and_keeps_the_greedy_actions():
    """``sharpen(k)``: every head's logits times k (the value untouched); under the joint masks the greedy
    actions are the same and the sampling distribution is softmax(k * logits) head by head, so its entropy
    falls with k > 1.  A factor <= 0 is refused."""
    from tamiyo.policy.distribution import MaskedFactoredCategorical

    torch.manual_seed(0)
    model = TamiyoGNN(env_schema("host-sim"), ModelConfig(hidden=16, layers=("sage",)))
    for p in model.parameters():  # heads initialised at gain 0.01 give near-uniform logits: spread them
        p.data.add_(0.3 * torch.randn_like(p))
    unrolls = host_sim_unrolls(4, length=5)
    graphs = PackedGraphs.concat([u.graphs.select(np.arange(len(u.actions))) for u in unrolls])  # one per mask
    graph = collate(graphs.select(np.arange(graphs.num_graphs)))
    masks = torch.from_numpy(np.concatenate([u.action_masks for u in unrolls]))
    before = model(graph)
    model.sharpen(3.0)
    after = model(graph)
    for b, a in zip(before.logits, after.logits, strict=True):
        torch.testing.assert_close(a, 3.0 * b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after.value, before.value)
    greedy = [MaskedFactoredCategorical(out.logits, masks).sample(deterministic=True) for out in (before, after)]
    assert torch.equal(greedy[0][0], greedy[1][0])
    entropy = [MaskedFactoredCategorical(out.logits, masks).evaluate(greedy[0][0])[1] for out in (before, after)]
    assert bool((entropy[1] < entropy[0]).all())
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="must be > 0"):
            model.sharpen(bad)
