"""TamiyoGNN: a policy/value network built from a `GraphSchema`.

Per-node-type encoders -> heterogeneous message passing (SAGE, then GATv2,
each residual + LayerNorm) -> mean-pool readout per node type -> separate
policy and value trunks.  Readout heads (``node_type`` None) are linear on the
policy context; pointer heads score every node of their type against the
policy context (each graph has exactly ``size`` such nodes, stored in graph
order, so the scores reshape to ``[G, size]``).

A schema without relations (gym one-node graphs) simply gets no message
passing, which makes the network a CleanRL-sized MLP.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import GATv2Conv, HeteroConv, SAGEConv

from tamiyo.contracts.graph import GraphSchema
from tamiyo.policy.batching import GraphBatch
from tamiyo.policy.message_passing import FusedSage


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 64
    layers: tuple[str, ...] = ("sage", "gatv2")  # message-passing layer kinds, in order
    gat_heads: int = 2
    activation: str = "tanh"
    separate_critic: bool = False  # own encoders/message passing for the value function

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> ModelConfig:
        d = json.loads(text)
        d["layers"] = tuple(d["layers"])
        return ModelConfig(**d)


@dataclass
class PolicyOutput:
    logits: list[torch.Tensor]  # one [G, size_j] per action head, schema order
    value: torch.Tensor  # [G]


_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


def _linear(n_in: int, n_out: int, gain: float = math.sqrt(2)) -> nn.Linear:
    # Orthogonal init as in CleanRL: it matters for PPO's early learning speed.
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _conv(kind: str, hidden: int, gat_heads: int) -> nn.Module:
    if kind == "sage":
        return SAGEConv((hidden, hidden), hidden)
    if kind == "gatv2":
        if hidden % gat_heads:
            raise ValueError("hidden must be divisible by gat_heads")
        # Self loops make no sense across node types; the residual keeps each node's own state.
        return GATv2Conv((hidden, hidden), hidden // gat_heads, heads=gat_heads, add_self_loops=False)
    raise ValueError(f"unknown message-passing layer {kind!r}")


def _mean_pool(x: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    total = x.new_zeros(num_graphs, x.shape[1]).index_add_(0, batch, x)
    count = x.new_zeros(num_graphs).index_add_(0, batch, x.new_ones(batch.shape[0]))
    return total / count.clamp(min=1.0).unsqueeze(-1)


class _Torso(nn.Module):
    """Encoders + message passing + readout: graph -> (node states per type, graph embedding [G, H])."""

    def __init__(self, schema: GraphSchema, config: ModelConfig) -> None:
        super().__init__()
        h = config.hidden
        act = _ACTIVATIONS[config.activation]
        self.node_types = [nt.name for nt in schema.node_types]
        self.encoders = nn.ModuleDict(
            {nt.name: nn.Sequential(_linear(nt.num_features, h), act()) for nt in schema.node_types}
        )
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.kinds: list[str] = []
        # SAGE layers run fused (policy/message_passing.py) unless switched off (benchmarks, tests).  Measured
        # (host-sim, hidden 32, one thread, CPU time): for acting (no gradient) the one-scatter fused layer is
        # 1.6-1.9x faster than PyG's HeteroConv up to 64 graphs, 1.2x at 256, even at 512; with gradients (the
        # learner) its backward is slow on the CPU, and the grouped layer (a scatter per relation, a matmul per
        # receiving type) is used instead: 1.4x faster than HeteroConv, forward + backward, at 672 graphs.
        self.fuse_sage = True
        self.fuse_max_graphs = 512
        self.fused = FusedSage(self.node_types, [r.key for r in schema.relations])
        if schema.relations:
            for kind in config.layers:
                convs = {rel.key: _conv(kind, h, config.gat_heads) for rel in schema.relations}
                with warnings.catch_warnings():
                    # Types that only send (e.g. "global") are meant to keep their state; PyG warns.
                    warnings.filterwarnings("ignore", message="There exist node types")
                    self.convs.append(HeteroConv(convs, aggr="sum"))
                self.kinds.append(kind)
                self.norms.append(nn.ModuleDict({t: nn.LayerNorm(h) for t in self.node_types}))
        self.act = act()
        self.readout = nn.Sequential(_linear(h * len(self.node_types), h), act())

    def forward(self, graph: GraphBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        hs = {t: self.encoders[t](graph.x[t]) for t in self.node_types}
        plan, inv_degrees = None, None
        for kind, conv, norms in zip(self.kinds, self.convs, self.norms, strict=True):
            if kind != "sage" or not self.fuse_sage:
                out = conv(hs, graph.edge_index)
            elif not torch.is_grad_enabled() and graph.num_graphs <= self.fuse_max_graphs:
                if plan is None:
                    plan = self.fused.plan(graph.x, graph.edge_index)
                out = self.fused.forward(conv, hs, plan)
            else:
                if inv_degrees is None:
                    inv_degrees = self.fused.inverse_degrees(graph.x, graph.edge_index)
                out = self.fused.forward_grouped(conv, hs, graph.edge_index, inv_degrees)
            # Node types that receive no messages keep their state.
            layer_norms = cast(nn.ModuleDict, norms)  # self.norms holds ModuleDicts; iterating it types as Module
            hs = {t: layer_norms[t](hs[t] + self.act(out[t])) if t in out else hs[t] for t in self.node_types}
        pooled = torch.cat([_mean_pool(hs[t], graph.batch[t], graph.num_graphs) for t in self.node_types], dim=-1)
        return hs, self.readout(pooled)


class TamiyoGNN(nn.Module):
    def __init__(self, schema: GraphSchema, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.schema = schema
        self.config = config or ModelConfig()
        h = self.config.hidden
        act = _ACTIVATIONS[self.config.activation]
        self.torso = _Torso(schema, self.config)
        # A separate critic torso keeps large value gradients out of the policy's features.
        self.value_torso = _Torso(schema, self.config) if self.config.separate_critic else None
        self.policy_trunk = nn.Sequential(_linear(h, h), act())
        self.value_trunk = nn.Sequential(_linear(h, h), act(), _linear(h, 1, gain=1.0))
        self.heads = nn.ModuleDict()
        for head in schema.action_heads:
            if head.node_type is None:
                self.heads[head.name] = _linear(h, head.size, gain=0.01)
            else:
                self.heads[head.name] = nn.Sequential(_linear(2 * h, h), act(), _linear(h, 1, gain=0.01))

    def forward(self, graph: GraphBatch) -> PolicyOutput:
        hs, z = self.torso(graph)
        ctx = self.policy_trunk(z)
        logits: list[torch.Tensor] = []
        for head in self.schema.action_heads:
            if head.node_type is None:
                logits.append(self.heads[head.name](ctx))
            else:
                logits.append(self._pointer(self.heads[head.name], hs[head.node_type], ctx, head.size))
        z_value = z if self.value_torso is None else self.value_torso(graph)[1]
        return PolicyOutput(logits=logits, value=self.value_trunk(z_value).squeeze(-1))

    @torch.no_grad()
    def sharpen(self, factor: float) -> None:
        """Multiply every action head's logits by ``factor`` (> 0), in place: the policy at temperature
        1 / ``factor``.  Its greedy choices stay the same; with ``factor`` > 1 its samples come closer to them.

        Every logit is the output of a head's last linear layer, so scaling that layer's weight and bias scales
        the logit exactly; masks and the conditional walk of the factored distribution act on the logits."""
        if not factor > 0:
            raise ValueError(f"the sharpening factor must be > 0, got {factor}")
        for head in self.heads.values():
            last = head if isinstance(head, nn.Linear) else cast(nn.Sequential, head)[-1]
            assert isinstance(last, nn.Linear)
            last.weight.mul_(factor)
            last.bias.mul_(factor)

    @staticmethod
    def _pointer(head: nn.Module, nodes: torch.Tensor, ctx: torch.Tensor, size: int) -> torch.Tensor:
        """Scores [G, size] of a pointer head: ``head(cat([node, ctx of its graph]))`` for every node.

        The first linear layer is split over the concatenation, ``W [node; ctx] + b = W_n node + (W_c ctx + b)``,
        and the context term is computed once per graph and broadcast over the graph's ``size`` nodes (they
        are stored in graph order) instead of gathering and concatenating a context row per node: the same
        parameters and state-dict keys, equal outputs to float rounding (tests/policy/test_model.py)."""
        first, act, last = cast(nn.Sequential, head)
        first = cast(nn.Linear, first)
        h, w = nodes.shape[1], first.weight
        per_graph = F.linear(ctx, w[:, h:], first.bias).unsqueeze(1)  # [G, 1, H]
        hidden = act(F.linear(nodes, w[:, :h]).view(ctx.shape[0], size, first.out_features) + per_graph)
        return last(hidden).view(ctx.shape[0], size)
