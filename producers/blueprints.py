"""The blueprint catalog: what a seed slot can grow and what it costs.

Pure data (no torch) so that host-sim uses the same costs; the torch modules
that host-train plants live in `seed_modules.py`.

A seed at slot i is a branch *parallel to host layer i*: it reads that layer's
input (width ``in_width``: the task's features for slot 0, the previous hidden
activation otherwise) and adds ``alpha * delta`` to the layer's ReLU output
(width ``out_width``).  So a seed widens the layer it sits on: residual MLPs
add ``hidden_multiplier * out_width`` hidden units, the low-rank adapter a
rank-r linear path (LoRA-like).  Costs depend on the slot through in_width.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Blueprint:
    blueprint_id: str
    kind: str  # "residual_mlp" | "low_rank"
    hidden_multiplier: int  # residual MLPs: hidden width = multiplier * out_width
    rank: int  # low-rank adapters: rank of the update
    sim_capacity: float  # host-sim: capacity the seed adds when fully trained (relative units)

    @property
    def nonlinear(self) -> bool:
        return self.kind == "residual_mlp"

    def param_count(self, in_width: int, out_width: int) -> int:
        if self.kind == "residual_mlp":
            hidden = self.hidden_multiplier * out_width
            return in_width * hidden + hidden + hidden * out_width + out_width  # two Linear layers, biases
        if self.kind == "low_rank":
            return (in_width + out_width) * self.rank  # down and up projections, no bias
        raise ValueError(f"unknown blueprint kind {self.kind!r}")


CATALOG: tuple[Blueprint, ...] = (
    Blueprint("residual_mlp", "residual_mlp", hidden_multiplier=2, rank=0, sim_capacity=0.45),
    Blueprint("wide_residual_mlp", "residual_mlp", hidden_multiplier=4, rank=0, sim_capacity=0.75),
    Blueprint("low_rank_adapter", "low_rank", hidden_multiplier=0, rank=4, sim_capacity=0.18),
)
KINDS: tuple[str, ...] = ("residual_mlp", "low_rank")


def blueprint_by_id(blueprint_id: str) -> Blueprint:
    for bp in CATALOG:
        if bp.blueprint_id == blueprint_id:
            return bp
    raise KeyError(blueprint_id)
