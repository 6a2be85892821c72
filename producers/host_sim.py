"""host-sim: `HostEnv` over a cheap analytical surrogate of host training (numpy/python only).

Per task (drawn from the reset seed): number of classes k, a best reachable
accuracy, the host's base capacity, a per-slot *gain* (how much a seed at that
slot can add: the bottleneck structure), the learning rate the task likes best.

Per epoch, with capacity C = base + sum(alpha * quality * readiness) over seeds:

    ceiling(C) = chance + (top - chance) * (1 - exp(-C))
    target     = ceiling - noise_floor(lr)          # high LR cannot converge finely
    acc       += speed(lr) * (target - acc)         # saturating progress
    spikes: with a probability that grows with LR and with blending seeds,
            accuracy drops (instability); blending an under-trained seed costs
            accuracy in proportion to the alpha step (shock).

A seed's quality is slot gain x blueprint capacity x noise, and with some
probability negative (it hurts).  Its parameter cost is host-train's (the
catalog at the slot's fan-in), so the first slot is dearest, and on average
also the most useful, as in host-train.  Readiness grows while it trains.  The
observation leaks what a smart controller needs, noisily: slot *pressure*
tracks slot gain, *blend_gain* tracks quality x readiness.  So there is
headroom over the plateau heuristic: germinate early, at the right slot,
with the right blueprint, cull bad seeds before blending, lower the LR late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tamiyo.producers.blueprints import CATALOG, Blueprint
from tamiyo.producers.host_backend import EpochStats, HostConfig, HostShape
from tamiyo.producers.host_env import HostEnv


@dataclass(frozen=True)
class SimParams:
    width: int = 8
    speed: float = 0.25  # fraction of the gap to the target closed per epoch at the preferred LR
    noise_floor: float = 0.03  # accuracy shortfall at the preferred LR (scales with LR)
    spike_prob: float = 0.01  # per epoch at the preferred LR, no blending
    shock: float = 0.12  # accuracy lost per unit alpha step of an untrained seed
    harmful_prob: float = 0.2
    readiness_rate: float = 0.35
    obs_noise: float = 0.004
    seed_gain: float = 1.0  # scales every blueprint's capacity gain (`tamiyo calibrate` fits it)


class SurrogateHost:
    def __init__(self, num_slots: int = 3, params: SimParams | None = None) -> None:
        self.num_slots = num_slots
        self.p = params or SimParams()
        self._rng = np.random.default_rng(0)

    def new_task(self, rng: np.random.Generator) -> tuple[HostShape, EpochStats]:
        p, s = self.p, self.num_slots
        self._rng = rng
        self.k = int(rng.integers(3, 11))
        self.chance = 1.0 / self.k
        self.top = float(rng.uniform(0.85, 0.99))
        self.base_capacity = float(rng.uniform(1.0, 2.0))
        # Like host-train: on average a seed on the first layer (it sees the raw input) helps most.
        self.slot_gain = (rng.uniform(0.2, 1.2, size=s) * np.linspace(1.4, 0.8, s)).tolist()
        self.lr_opt_step = int(rng.integers(-1, 2))
        input_dim = int(rng.choice([20, 32, 64]))
        fan_in = (input_dim, *([p.width] * s))
        fan_out = (*([p.width] * s), self.k)
        base = sum(i * o + o for i, o in zip(fan_in, fan_out, strict=True))
        self.quality = [0.0] * s
        self.readiness = [0.0] * s
        self.prev_alpha = [0.0] * s
        self.acc = self.chance
        self.epoch = 0
        shape = HostShape(fan_in, fan_out, p.width, base, self.k, initial_lr=0.01)
        return shape, self._stats(lr_rel=1.0, n_blending=0)

    def plant(self, slot: int, blueprint: Blueprint) -> None:
        q = self.slot_gain[slot] * blueprint.sim_capacity * float(self._rng.lognormal(0.0, 0.3)) * self.p.seed_gain
        if self._rng.random() < self.p.harmful_prob:
            q = -0.6 * q
        self.quality[slot], self.readiness[slot], self.prev_alpha[slot] = q, 0.0, 0.0

    def remove(self, slot: int) -> None:
        self.quality[slot], self.readiness[slot], self.prev_alpha[slot] = 0.0, 0.0, 0.0

    def train_epoch(self, lr: float, alphas: list[float], seed_trains: list[bool]) -> EpochStats:
        p, rng = self.p, self._rng
        # LR relative to what this task likes: speed, noise floor and instability all grow with it.
        lr_rel = (lr / 0.01) / 2.0**self.lr_opt_step
        capacity = self.base_capacity
        n_blending = 0
        for i in range(self.num_slots):
            a = alphas[i]
            if seed_trains[i]:
                self.readiness[i] += (1.0 - self.readiness[i]) * p.readiness_rate * min(lr_rel, 2.0) ** 0.5
            if a > self.prev_alpha[i]:
                n_blending += 1
                self.acc -= p.shock * (a - self.prev_alpha[i]) * (1.0 - self.readiness[i])
            self.prev_alpha[i] = a
            capacity += a * self.quality[i] * self.readiness[i]
        ceiling = self.chance + (self.top - self.chance) * (1.0 - math.exp(-max(capacity, 0.0)))
        target = ceiling - p.noise_floor * lr_rel
        speed = 1.0 - math.exp(-p.speed * 1.1 * min(lr_rel, 4.0) ** 0.7)
        self.acc += speed * (target - self.acc)
        spike_p = p.spike_prob * max(lr_rel, 1.0) ** 2 * (1.0 + 2.0 * n_blending)
        if rng.random() < spike_p:
            self.acc -= float(rng.uniform(0.02, 0.12))
        self.acc = min(max(self.acc, self.chance * 0.5), 0.999)
        self.epoch += 1
        return self._stats(lr_rel, n_blending)

    def _stats(self, lr_rel: float, n_blending: int) -> EpochStats:
        # Plain floats and one draw of all the noise: this runs every step and must stay cheap.
        p, s = self.p, self.num_slots
        noise = self._rng.standard_normal(6 + 2 * s).tolist()
        acc = min(max(self.acc + p.obs_noise * noise[0], 0.0), 1.0)
        skill = max((acc - self.chance) / (1.0 - self.chance), 0.0)
        val_loss = math.log(self.k) * (1.0 - skill) ** 1.5 + 0.05 + 0.01 * abs(noise[1])
        train_loss = 0.92 * val_loss + 0.01 * abs(noise[2])
        gap = max(self.top - acc, 0.0)
        n_layers = s + 1
        blend_gain, seed_grad, pressure = [], [], []
        for i in range(s):
            q, r = self.quality[i], self.readiness[i]
            seeded = q != 0.0
            blend_gain.append(0.6 * q * r + 0.08 * noise[6 + i] if seeded else 0.0)
            seed_grad.append(0.002 * (1.0 - r) if seeded else 0.0)
            pressure.append(0.002 * self.slot_gain[i] * (0.3 + gap) * math.exp(0.25 * noise[6 + s + i]))
        return EpochStats(
            val_acc=acc,
            val_loss=val_loss,
            train_loss=train_loss,
            loss_variance=0.002 * lr_rel * (1.0 + n_blending) * math.exp(0.2 * noise[3]),
            grad_norm=(0.5 + 2.0 * gap) * math.exp(0.1 * noise[4]),
            layer_weight_rms=np.array([0.3 + 0.01 * self.epoch] * n_layers),
            layer_grad_rms=np.array([0.001 * (0.2 + gap)] * n_layers),
            layer_dead_fraction=np.zeros(n_layers),
            slot_pressure=np.array(pressure),
            seed_grad_rms=np.array(seed_grad),
            seed_blend_gain=np.array(blend_gain),
        )


def make_host_sim(seed: int = 0, config: HostConfig | None = None, params: SimParams | None = None) -> HostEnv:
    cfg = config or HostConfig()
    backend = SurrogateHost(cfg.num_slots, params)
    return HostEnv(backend, "host-sim", seed=seed, config=cfg, blueprints=CATALOG)
