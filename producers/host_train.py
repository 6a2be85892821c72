"""host-train: `HostEnv` over real training of a small torch MLP (one step = one epoch).

Host: d → w → w → w → k (ReLU), w = 8 by default: deliberately under-capacity.
Slot i sits on hidden layer i: a planted seed is a branch parallel to that
layer, reading its input u and adding to its ReLU output h, so the slot emits
h + α·seed(u) (α = 0 until BLENDING, then the ramp, 1 from PROBATIONARY on).
That widens the layer (a residual block *inside* the width-w bottleneck was
tried first and bought nothing).  A seed that learns (TRAINING and later)
also minimizes an *isolated* loss, weighted (1 − α): the task loss of
h.detach() + seed(u.detach()) pushed through the downstream layers with
detached weights.  So a training seed learns what would help at full weight,
with curvature (no runaway linear objective), while the host's own output and
gradients are untouched by it; as α ramps the real path takes over.

After every epoch one forward/backward on the validation set (no update)
measures what the observation needs: accuracy and loss, the gradient pressure
at each slot, dead units, and each seed's first-order blend gain −∂L/∂α.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tamiyo.producers.blueprints import CATALOG, Blueprint
from tamiyo.producers.host_backend import EpochStats, HostConfig, HostShape
from tamiyo.producers.host_env import HostEnv
from tamiyo.producers.host_tasks import Task, draw_task
from tamiyo.producers.seed_modules import _init_linear, build_seed

INITIAL_LR = 0.01  # Adam
MAX_GRAD_NORM = 5.0  # the host's and each seed's gradients are clipped to this norm, each on its own
Isolated = tuple[float, torch.Tensor]  # (weight 1 − α, logits of the seed's isolated path)


class HostMLP(nn.Module):
    def __init__(self, d_in: int, width: int, num_classes: int, num_slots: int, gen: torch.Generator) -> None:
        super().__init__()
        dims = [d_in, *([width] * num_slots), num_classes]
        linears = [nn.Linear(a, b) for a, b in itertools.pairwise(dims)]
        for layer in linears:
            _init_linear(layer, gen)
        self.layers = nn.ModuleList(linears)  # registers the parameters (the host's; seeds are not in it)
        # The same modules as a typed list: ModuleList items are typed as plain Modules.
        self.linears: list[nn.Linear] = linears
        self.seeds: list[nn.Module | None] = [None] * num_slots

    def forward(
        self, x: torch.Tensor, alphas: list[float], trains: list[bool], probe: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor | None], list[torch.Tensor], list[Isolated]]:
        """Logits; the slot outputs, each seed's delta, the hidden activations (probe only);
        and the isolated logits of every learning seed with α < 1 (with their weight 1 − α)."""
        slot_out: list[torch.Tensor] = []
        deltas: list[torch.Tensor | None] = []
        hidden: list[torch.Tensor] = []
        isolated: list[Isolated] = []
        h = x
        last = len(self.linears) - 1
        for i, layer in enumerate(self.linears):
            u = h  # the layer's input: what a seed at this slot reads
            h = layer(h)
            if i == last:
                break
            h = torch.relu(h)
            seed, alpha = self.seeds[i], alphas[i]
            out = h
            delta = None
            if seed is not None:
                if alpha > 0.0:
                    delta = seed(u)
                    out = out + alpha * delta
                if alpha < 1.0 and trains[i]:
                    isolated.append((1.0 - alpha, self._downstream(h.detach() + seed(u.detach()), i + 1)))
                if delta is None and probe:  # what blending this seed in would do
                    delta = seed(u).detach()
            if probe:
                out.retain_grad()
                hidden.append(h)
            slot_out.append(out)
            deltas.append(delta)
            h = out
        return h, slot_out, deltas, hidden, isolated

    def _downstream(self, h: torch.Tensor, first: int) -> torch.Tensor:
        """Layers ``first``.. with detached weights: gradients reach only what produced ``h``."""
        last = len(self.linears) - 1
        for j in range(first, last + 1):
            layer = self.linears[j]
            h = F.linear(h, layer.weight.detach(), layer.bias.detach())
            if j < last:
                h = torch.relu(h)
        return h


def host_shape(model: HostMLP, width: int) -> HostShape:
    """The `HostShape` of a freshly built host network (its seeds are not part of the base)."""
    base = sum(p.numel() for p in model.layers.parameters())
    fan_in = tuple(layer.in_features for layer in model.linears)
    fan_out = tuple(layer.out_features for layer in model.linears)
    return HostShape(fan_in, fan_out, width, base, fan_out[-1], INITIAL_LR)


class TorchHost:
    """The `HostBackend` of host-train."""

    def __init__(self, num_slots: int = 3, width: int = 8, batch_size: int = 128, digits_fraction: float = 0.3):
        self.num_slots = num_slots
        self.width = width
        self.batch_size = batch_size
        self.digits_fraction = digits_fraction
        torch.set_num_threads(1)  # tiny matrices: threads only add overhead, and keep runs deterministic

    # ------------------------------------------------------------------ backend protocol

    def new_task(self, rng: np.random.Generator) -> tuple[HostShape, EpochStats]:
        self.task: Task = draw_task(rng, self.digits_fraction)
        self._rng = rng
        self._gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        t = self.task
        self.xt, self.yt = torch.from_numpy(t.x_train), torch.from_numpy(t.y_train)
        self.xv, self.yv = torch.from_numpy(t.x_val), torch.from_numpy(t.y_val)
        self.model = HostMLP(t.x_train.shape[1], self.width, t.num_classes, self.num_slots, self._gen)
        self.opt = torch.optim.Adam(self.model.layers.parameters(), lr=INITIAL_LR)
        self.seed_opts: list[torch.optim.Optimizer | None] = [None] * self.num_slots
        self.epoch = 0
        shape = host_shape(self.model, self.width)
        zeros = [0.0] * self.num_slots
        with torch.no_grad():
            logits, *_ = self.model(self.xt, zeros, [False] * self.num_slots)
            train_loss = float(F.cross_entropy(logits, self.yt))
        stats = self._probe(zeros, train_loss, 0.0, 0.0, np.zeros(self.num_slots + 1), np.zeros(self.num_slots))
        return shape, stats

    def plant(self, slot: int, blueprint: Blueprint) -> None:
        in_width = self.model.linears[slot].in_features
        seed = build_seed(blueprint, in_width, self.width, self._gen)
        self.model.seeds[slot] = seed
        self.seed_opts[slot] = torch.optim.Adam(seed.parameters(), lr=self.opt.param_groups[0]["lr"])

    def remove(self, slot: int) -> None:
        self.model.seeds[slot] = None
        self.seed_opts[slot] = None

    def train_epoch(self, lr: float, alphas: list[float], seed_trains: list[bool]) -> EpochStats:
        model = self.model
        alpha_list = [float(a) for a in alphas]
        trains = [bool(t) and model.seeds[i] is not None for i, t in enumerate(seed_trains)]
        opts = [self.opt] + [o for i, o in enumerate(self.seed_opts) if o is not None and trains[i]]
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = lr
        n = self.xt.shape[0]
        order = torch.from_numpy(self._rng.permutation(n))
        losses: list[float] = []
        grad_norms: list[float] = []
        layer_grad = np.zeros(len(model.layers))
        seed_grad = np.zeros(self.num_slots)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            logits, _, _, _, isolated = model(self.xt[idx], alpha_list, trains)
            target = self.yt[idx]
            loss = F.cross_entropy(logits, target)
            total = loss
            for weight, iso_logits in isolated:
                total = total + weight * F.cross_entropy(iso_logits, target)
            total.backward()
            # Clipping keeps high-LR runs from diverging outright; the norm itself is a feature.
            grad_norms.append(float(nn.utils.clip_grad_norm_(model.layers.parameters(), MAX_GRAD_NORM)))
            for j, layer in enumerate(model.linears):
                layer_grad[j] += _rms(layer.weight.grad)
            for i, seed in enumerate(model.seeds):
                if seed is not None and trains[i]:
                    nn.utils.clip_grad_norm_(seed.parameters(), MAX_GRAD_NORM)
                    seed_grad[i] += _rms_params(seed)
            for opt in opts:
                opt.step()
            losses.append(float(loss.detach()))
        batches = len(losses)
        self.epoch += 1
        return self._probe(
            alpha_list,
            float(np.mean(losses)),
            float(np.var(losses)),
            float(np.mean(grad_norms)),
            layer_grad / batches,
            seed_grad / batches,
        )

    # ------------------------------------------------------------------ measurement

    def _probe(
        self,
        alphas: list[float],
        train_loss: float,
        loss_variance: float,
        grad_norm: float,
        layer_grad: np.ndarray,
        seed_grad: np.ndarray,
    ) -> EpochStats:
        """One validation forward/backward without an update: accuracy, loss and gradient probes."""
        model = self.model
        model.zero_grad(set_to_none=True)
        logits, slot_out, deltas, hidden, _ = model(self.xv, alphas, [False] * self.num_slots, probe=True)
        loss = F.cross_entropy(logits, self.yv)
        loss.backward()
        val_loss = float(loss.detach())
        pressure = np.zeros(self.num_slots)
        blend_gain = np.zeros(self.num_slots)
        for i, out in enumerate(slot_out):
            g = out.grad
            if g is None:
                continue
            pressure[i] = _rms(g)
            delta = deltas[i]
            if delta is not None:
                # dL/dalpha = <dL/d(slot output), delta>; the loss already averages over the batch.
                blend_gain[i] = -float((g * delta.detach()).sum()) / max(val_loss, 1e-6)
        dead = [float((h.detach() <= 0).all(dim=0).float().mean()) for h in hidden]
        model.zero_grad(set_to_none=True)
        acc = float((logits.argmax(dim=1) == self.yv).float().mean())
        weight_rms = [_rms(layer.weight.detach()) for layer in model.linears]
        return EpochStats(
            val_acc=acc,
            val_loss=finite_or_cap(val_loss),
            train_loss=finite_or_cap(train_loss),
            loss_variance=finite_or_cap(loss_variance),
            grad_norm=finite_or_cap(grad_norm),
            layer_weight_rms=finite(weight_rms),
            layer_grad_rms=finite(layer_grad),
            layer_dead_fraction=finite([*dead, 0.0]),
            slot_pressure=finite(pressure),
            seed_grad_rms=finite(seed_grad),
            seed_blend_gain=finite(blend_gain),
        )


def finite(values: object) -> np.ndarray:
    """A diverged run (LR pushed too high) must still give a valid observation."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=1e3, neginf=-1e3)


def finite_or_cap(value: float) -> float:
    """A loss or norm of a diverged run, as the observation takes it."""
    return value if math.isfinite(value) else 1e3


def _rms(t: torch.Tensor | None) -> float:
    return 0.0 if t is None else float(t.detach().pow(2).mean().sqrt())


def _rms_params(module: nn.Module) -> float:
    grads = [p.grad.detach().reshape(-1) for p in module.parameters() if p.grad is not None]
    return 0.0 if not grads else float(torch.cat(grads).pow(2).mean().sqrt())


def make_host_train(seed: int = 0, config: HostConfig | None = None, width: int = 8) -> HostEnv:
    cfg = config or HostConfig()
    return HostEnv(TorchHost(cfg.num_slots, width), "host-train", seed=seed, config=cfg, blueprints=CATALOG)
