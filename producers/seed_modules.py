"""The torch modules host-train plants for each blueprint (see blueprints.py for the catalog).

Each maps the input of a host layer [N, in_width] to a delta on that layer's
output [N, out_width]; the host adds ``alpha * delta``.  The last projection starts at zero, so planting a seed
never changes the host's function by itself: only training does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tamiyo.producers.blueprints import Blueprint


def _init_linear(layer: nn.Linear, generator: torch.Generator, zero: bool = False) -> None:
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
        else:
            bound = math.sqrt(6.0 / layer.in_features)  # He-uniform for ReLU inputs
            layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.zero_()


class ResidualMLPSeed(nn.Module):
    def __init__(self, in_width: int, out_width: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.up = nn.Linear(in_width, hidden)
        self.down = nn.Linear(hidden, out_width)
        _init_linear(self.up, generator)
        _init_linear(self.down, generator, zero=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(h)))


class LowRankSeed(nn.Module):
    def __init__(self, in_width: int, out_width: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        self.a = nn.Linear(in_width, rank, bias=False)
        self.b = nn.Linear(rank, out_width, bias=False)
        _init_linear(self.a, generator)
        _init_linear(self.b, generator, zero=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(h))


def build_seed(blueprint: Blueprint, in_width: int, out_width: int, generator: torch.Generator) -> nn.Module:
    if blueprint.kind == "residual_mlp":
        hidden = blueprint.hidden_multiplier * out_width
        module: nn.Module = ResidualMLPSeed(in_width, out_width, hidden, generator)
    elif blueprint.kind == "low_rank":
        module = LowRankSeed(in_width, out_width, blueprint.rank, generator)
    else:
        raise ValueError(f"unknown blueprint kind {blueprint.kind!r}")
    n_params = sum(p.numel() for p in module.parameters())
    expected = blueprint.param_count(in_width, out_width)
    if n_params != expected:  # the catalog's cost must be the truth
        raise AssertionError(f"{blueprint.blueprint_id}: {n_params} params, catalog says {expected}")
    return module
