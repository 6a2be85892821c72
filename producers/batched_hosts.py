"""`BatchedHosts`: the host-train networks of N envs trained as one batch of tensors.

`TorchHost` (host_train.py) trains one host MLP per env with ~20 small torch calls per layer and
minibatch; at 8-wide layers that is all dispatch overhead (~7 ms a host epoch, 140-150 env steps/s
on the 2-core dev VM, bench/vec_envs.py --env host-train).  Here every host of an actor is a row of
one flat parameter matrix [N, P], padded to the largest task (64 features, 10 classes) and the
largest blueprint, and an epoch is one loop over minibatches in which each op (a `bmm`, a ReLU, a
masked log-softmax, an Adam update per segment) serves all N hosts.  Padding is inert: padded inputs
and parameters are zero, padded classes get −inf logits, padded samples weight 0, and a `real` mask
zeroes the gradient of every padded parameter, so each host's numbers are its own.
tests/producers/test_vec_host_train.py checks every statistic of an epoch against `TorchHost` from
the same parameters, and Adam against torch.optim.Adam; trajectories agree only to the point where
Adam's sign-like first steps on ~0 gradients turn last-bit differences into different weights.

Profiled with torch.profiler before each change (N = 64, random valid actions): advanced indexing
of minibatch rows (~1 ms) became one index_select (~80 us); log_softmax over a last dim of 10 classes
(~1 ms) runs over dim 1 of feature-major [N, K, n] (~75 us); torch.where, slow on this CPU (~1.1 ms
on [64, 4202]), is avoided in the hot path; each view of one [N, P] leaf made autograd zero-fill an
[N, P] gradient, so each tensor is its own leaf (`_Weights`); seed passes run only over the hosts
that need them.  From 130 to ~600-900 env steps/s at 64-256 hosts.  Then, with seeds in ~30% of the
slots, the seed passes were ~2/3 of an epoch, mostly per-op cost: their host sets are now planned once
per epoch (`_SeedPlan`), slot 0's blended and isolated paths share one pass (both read the data), and
every isolated path is one stream of rows through the later layers with one loss: 1.14-1.18x per
epoch at 64 hosts (bench/vec_envs.py --env host-train for the env steps).

Semantics are `TorchHost`'s, draw for draw: the same task, weight initialisation (the same
`HostMLP` / `build_seed` calls on the same generators, copied into the padded rows) and minibatch
permutation per epoch; the task loss plus each learning seed's isolated loss; the host's and each
seed's gradient clipped to norm 5 on their own; Adam per host and per seed (its own step count, as
separate optimisers); then the validation probe.  A host with fewer minibatches than the largest in
its epoch sits out the extra ones (masked Adam); so does a host that is not ``active``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tamiyo.producers.blueprints import CATALOG, Blueprint
from tamiyo.producers.host_backend import EpochStats, HostShape
from tamiyo.producers.host_tasks import MAX_CLASSES, MAX_FEATURES, MAX_SAMPLES, TRAIN_FRACTION, Task, draw_task
from tamiyo.producers.host_train import MAX_GRAD_NORM, HostMLP, finite, finite_or_cap, host_shape
from tamiyo.producers.seed_modules import LowRankSeed, ResidualMLPSeed, build_seed

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as TorchHost uses them


@dataclass(frozen=True)
class _Block:
    """One parameter tensor's place in a host's flat row: offset and padded shape."""

    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class _Layout:
    """Where each host layer and each slot's seed live in the flat row of P parameters."""

    def __init__(self, num_slots: int, width: int, max_hidden: int) -> None:
        self.num_layers = num_slots + 1
        fan_in = [MAX_FEATURES, *([width] * num_slots)]
        fan_out = [*([width] * num_slots), MAX_CLASSES]
        offset = 0

        def block(shape: tuple[int, ...]) -> _Block:
            nonlocal offset
            b = _Block(offset, shape)
            offset += b.size
            return b

        self.weights = [block((o, i)) for i, o in zip(fan_in, fan_out, strict=True)]
        self.biases = [block((o,)) for o in fan_out]
        self.bounds = [(0, offset)]  # each segment's [start, end): the host's, then each slot's seed
        # A seed is up [H, in] (+ bias) -> activation -> down [width, H] (+ bias); low-rank: no biases, no ReLU.
        self.up, self.up_b, self.down, self.down_b = [], [], [], []
        for s in range(num_slots):
            start = offset
            self.up.append(block((max_hidden, fan_in[s])))
            self.up_b.append(block((max_hidden,)))
            self.down.append(block((width, max_hidden)))
            self.down_b.append(block((width,)))
            self.bounds.append((start, offset))
        self.size = offset
        host = self.bounds[0][1]
        weight_of = torch.full((host,), -1, dtype=torch.long)
        for j, b in enumerate(self.weights):
            weight_of[b.offset : b.offset + b.size] = j
        # [host P, L]: which host parameters are layer j's weight (for the per-layer gradient RMS)
        self.layer_weights = F.one_hot(weight_of.clamp(min=0), self.num_layers).float() * (weight_of >= 0)[:, None]

    def view(self, flat: torch.Tensor, b: _Block) -> torch.Tensor:
        return flat[:, b.offset : b.offset + b.size].view(flat.shape[0], *b.shape)


class _Weights:
    """Every host layer's and seed's tensors for one pass: views of a flat [N, P] matrix, each seed cut to
    the widest hidden layer planted at its slot.  With ``grad`` each view is a leaf of its own, so the
    backward pass makes one small gradient per tensor (a view of one [N, P] leaf made autograd zero-fill
    an [N, P] gradient per view: ~85 fills a minibatch)."""

    def __init__(self, layout: _Layout, flat: torch.Tensor, hidden: list[int], grad: bool) -> None:
        self.parts: list[tuple[_Block, tuple[slice, ...], torch.Tensor]] = []

        def part(block: _Block, region: tuple[slice, ...]) -> torch.Tensor:
            t = layout.view(flat, block)[(slice(None), *region)]
            if grad:
                t = t.detach().requires_grad_()
            self.parts.append((block, region, t))
            return t

        every = slice(None)
        self.w = [part(b, (every, every)) for b in layout.weights]
        self.b = [part(b, (every,)) for b in layout.biases]
        cut = [slice(0, h) for h in hidden]
        self.up = [part(b, (cut[s], every)) for s, b in enumerate(layout.up)]
        self.up_b = [part(b, (cut[s],)) for s, b in enumerate(layout.up_b)]
        self.down = [part(b, (every, cut[s])) for s, b in enumerate(layout.down)]
        self.down_b = [part(b, (every,)) for b in layout.down_b]
        self.layout = layout

    def flat_grad(self, total: torch.Tensor) -> torch.Tensor:
        """d total / d every parameter, as one [N, P] matrix (0 where a tensor took no part)."""
        leaves = [t for _, _, t in self.parts]
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
        out = torch.zeros(leaves[0].shape[0], self.layout.size)
        for (block, region, _), g in zip(self.parts, grads, strict=True):
            if g is not None:
                self.layout.view(out, block)[(slice(None), *region)] = g
        return out


@dataclass
class _Pass:
    """One forward pass over a batch of samples of every host."""

    logits: torch.Tensor  # [N, K, n] (feature-major), padded classes at -inf
    slot_out: list[torch.Tensor]  # [N, width, n] per slot
    deltas: list[torch.Tensor | None]  # probe only: each planted seed's output per slot (None: none planted)
    hidden: list[torch.Tensor]  # the ReLU outputs before the seeds
    isolated: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None  # every learning seed's isolated path:
    # (its host [M], its weight 1 − α [M], its logits [M, K, n]); a host learning two seeds has two rows


@dataclass(frozen=True)
class _SeedPlan:
    """Which hosts' seeds at one slot take part in a pass.  α and planting hold for an epoch, so
    `train_epoch` makes the plans once, not per minibatch (the nonzero and index calls were per op)."""

    run: torch.Tensor  # hosts whose seed runs on the slot's live input: blending (and, in a probe, planted)
    nonlinear: torch.Tensor  # [len(run), 1, 1]: 1 for an MLP seed (ReLU), 0 for a low-rank one
    blend: torch.Tensor  # hosts with α > 0, which add α × the seed's output
    blend_rows: torch.Tensor | None  # their rows in the pass over run (None: all of them, in order)
    blend_alpha: torch.Tensor  # [len(blend), 1, 1]
    learn: torch.Tensor  # hosts whose seed learns on the isolated path (learning, α < 1)
    learn_rows: torch.Tensor | None  # slot 0: their rows in the pass over run (None: all of them)
    learn_nonlinear: torch.Tensor  # [len(learn), 1, 1]
    iso_weight: torch.Tensor  # [len(learn)]: 1 − α


def _rows_in(hosts: torch.Tensor, run: torch.Tensor, position: torch.Tensor) -> torch.Tensor | None:
    """The rows of ``hosts`` (a sorted subset of ``run``) in a pass over ``run``; None when they are all of
    it, in order (a sorted subset of the same size is the same set)."""
    return None if hosts.numel() == run.numel() else position[hosts]


class BatchedHosts:
    """N host-train hosts; host i behaves as a `TorchHost` would (see the module docstring)."""

    def __init__(self, num_hosts: int, num_slots: int = 3, width: int = 8, batch_size: int = 128,
                 digits_fraction: float = 0.3) -> None:  # fmt: skip
        if num_hosts < 1:
            raise ValueError("need at least one host")
        self.num_hosts, self.num_slots, self.width = num_hosts, num_slots, width
        self.batch_size, self.digits_fraction = batch_size, digits_fraction
        self.max_grad_norm = MAX_GRAD_NORM
        max_hidden = max(bp.hidden_multiplier * width if bp.nonlinear else bp.rank for bp in CATALOG)
        self.layout = lay = _Layout(num_slots, width, max_hidden)
        n, p = num_hosts, lay.size
        self.params = torch.zeros(n, p)
        self.real = torch.zeros(n, p)  # 1 where a parameter exists for this host (its gradient counts)
        self.exp_avg = torch.zeros(n, p)
        self.exp_avg_sq = torch.zeros(n, p)
        self.steps = torch.zeros(n, num_slots + 1)  # Adam step counts: the host's, then each seed's
        self.present = torch.zeros(n, num_slots, dtype=torch.bool)
        self.nonlinear = torch.zeros(n, num_slots, dtype=torch.bool)
        self.seed_params = torch.zeros(n, num_slots)  # real parameters of each seed (for its gradient RMS)
        self.seed_hidden = np.zeros((n, num_slots), dtype=np.int64)  # each seed's hidden units (0: no seed)
        n_train = int(TRAIN_FRACTION * MAX_SAMPLES)
        self.x_train = torch.zeros(n, n_train, MAX_FEATURES)
        self.y_train = torch.zeros(n, n_train, dtype=torch.long)
        self.x_val = torch.zeros(n, MAX_SAMPLES - n_train, MAX_FEATURES)
        self.y_val = torch.zeros(n, MAX_SAMPLES - n_train, dtype=torch.long)
        self.n_train = np.zeros(n, dtype=np.int64)
        self.n_val = torch.ones(n)
        self.classes = torch.zeros(n, MAX_CLASSES, dtype=torch.bool)
        self.classes[:, 0] = True  # a host with no task yet computes finite nothing (its rows weigh 0)
        self.weight_count = torch.ones(n, lay.num_layers)  # real elements of each layer's weight
        self.tasks: list[Task | None] = [None] * n
        self._rngs: list[np.random.Generator] = [np.random.default_rng(0)] * n
        self._gens: list[torch.Generator] = [torch.Generator() for _ in range(n)]
        torch.set_num_threads(1)  # as TorchHost: small matrices, and runs stay deterministic

    # ------------------------------------------------------------------ per-host changes

    def load_task(self, i: int, rng: np.random.Generator) -> HostShape:
        """Draw host i's next task and a fresh network from ``rng``, exactly as `TorchHost.new_task` does."""
        task = draw_task(rng, self.digits_fraction)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        d, k, lay = task.x_train.shape[1], task.num_classes, self.layout
        too_big = len(task.y_train) > self.x_train.shape[1] or len(task.y_val) > self.x_val.shape[1]
        if d > MAX_FEATURES or k > MAX_CLASSES or too_big:
            raise ValueError(f"task {task.name} exceeds the padded shape")
        self.tasks[i], self._rngs[i], self._gens[i] = task, rng, gen
        model = HostMLP(d, self.width, k, self.num_slots, gen)
        for t in (self.params, self.real, self.exp_avg, self.exp_avg_sq, self.steps):
            t[i] = 0
        self.present[i] = self.nonlinear[i] = False
        self.seed_params[i] = 0
        self.seed_hidden[i] = 0
        for j, layer in enumerate(model.linears):
            out_f, in_f = layer.weight.shape
            self._put(i, lay.weights[j], layer.weight.detach(), (slice(0, out_f), slice(0, in_f)))
            self._put(i, lay.biases[j], layer.bias.detach(), (slice(0, out_f),))
            self.weight_count[i, j] = out_f * in_f
        for x, y, xs, ys in ((self.x_train, self.y_train, task.x_train, task.y_train),
                             (self.x_val, self.y_val, task.x_val, task.y_val)):  # fmt: skip
            x[i] = 0
            y[i] = 0
            x[i, : len(ys), :d] = torch.from_numpy(xs)
            y[i, : len(ys)] = torch.from_numpy(ys)
        self.n_train[i] = len(task.y_train)
        self.n_val[i] = len(task.y_val)
        self.classes[i] = torch.arange(MAX_CLASSES) < k
        return host_shape(model, self.width)

    def plant(self, i: int, slot: int, blueprint: Blueprint) -> None:
        """A fresh seed at host i's ``slot`` (its own Adam state from step 0), as `TorchHost.plant`."""
        self.remove(i, slot)
        task = self.tasks[i]
        if task is None:
            raise RuntimeError("load a task first")
        in_width = task.x_train.shape[1] if slot == 0 else self.width
        seed = build_seed(blueprint, in_width, self.width, self._gens[i])
        lay = self.layout
        if isinstance(seed, ResidualMLPSeed):
            up, down = seed.up, seed.down
            hidden = up.out_features
            self._put(i, lay.up_b[slot], up.bias.detach(), (slice(0, hidden),))
            self._put(i, lay.down_b[slot], down.bias.detach(), (slice(0, self.width),))
        elif isinstance(seed, LowRankSeed):
            up, down = seed.a, seed.b
            hidden = up.out_features
        else:
            raise TypeError(f"no padded layout for {type(seed).__name__}")
        self._put(i, lay.up[slot], up.weight.detach(), (slice(0, hidden), slice(0, in_width)))
        self._put(i, lay.down[slot], down.weight.detach(), (slice(0, self.width), slice(0, hidden)))
        self.present[i, slot] = True
        self.nonlinear[i, slot] = blueprint.nonlinear
        self.seed_params[i, slot] = blueprint.param_count(in_width, self.width)
        self.seed_hidden[i, slot] = hidden

    def remove(self, i: int, slot: int) -> None:
        start, end = self.layout.bounds[1 + slot]
        for t in (self.params, self.real, self.exp_avg, self.exp_avg_sq):
            t[i, start:end] = 0
        self.steps[i, 1 + slot] = 0
        self.present[i, slot] = self.nonlinear[i, slot] = False
        self.seed_params[i, slot] = 0
        self.seed_hidden[i, slot] = 0

    def _put(self, i: int, block: _Block, value: torch.Tensor, region: tuple[slice, ...]) -> None:
        """Write ``value`` into ``region`` of host i's padded ``block`` and mark it real."""
        self.layout.view(self.params[i : i + 1], block)[0][region] = value
        self.layout.view(self.real[i : i + 1], block)[0][region] = 1.0

    # ------------------------------------------------------------------ training and measurement

    def initial_stats(self, hosts: list[int]) -> list[EpochStats]:
        """The untrained measurement of freshly loaded hosts (`TorchHost.new_task`'s stats): no seeds, α = 0."""
        zeros = torch.zeros(self.num_hosts, self.num_slots)
        with torch.no_grad():
            full = self._forward(self._weights(grad=False), self.x_train.mT, zeros, zeros)
            counts = torch.from_numpy(self.n_train).float().clamp(min=1)
            rows = torch.arange(self.x_train.shape[1]) < torch.from_numpy(self.n_train)[:, None]
            train_loss = self._losses(full.logits, self.y_train, rows, counts)
        n, s, layers = self.num_hosts, self.num_slots, self.layout.num_layers
        stats = self._probe(zeros, train_loss.tolist(), [0.0] * n, [0.0] * n, np.zeros((n, layers)), np.zeros((n, s)))
        return [stats[i] for i in hosts]

    def train_epoch(self, lrs: np.ndarray, alphas: np.ndarray, trains: np.ndarray,
                    active: np.ndarray | None = None) -> list[EpochStats | None]:  # fmt: skip
        """One epoch of every ``active`` host (default all): LR [N], α [N, S], seed learns [N, S].
        Returns each host's stats, None for the hosts that sat out."""
        n, s, bs, lay = self.num_hosts, self.num_slots, self.batch_size, self.layout
        act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        alpha = torch.as_tensor(np.asarray(alphas, dtype=np.float64), dtype=torch.float32)
        learns = torch.as_tensor(np.asarray(trains, dtype=bool)) & self.present
        iso_weight = torch.where(learns & (alpha < 1.0), 1.0 - alpha, 0.0)
        lr = torch.as_tensor(np.asarray(lrs, dtype=np.float64), dtype=torch.float32)
        counts = np.where(act, self.n_train, 0)
        order = torch.zeros(n, self.x_train.shape[1], dtype=torch.long)
        for host in np.flatnonzero(act).tolist():  # the same permutation draw as TorchHost, per host
            order[host, : counts[host]] = torch.from_numpy(self._rngs[host].permutation(int(counts[host])))
        batches = -(-counts // bs)
        num_batches = int(batches.max())
        losses = np.zeros((n, max(num_batches, 1)))
        grad_norms = np.zeros((n, max(num_batches, 1)))
        layer_grad = np.zeros((n, lay.num_layers))
        seed_grad = np.zeros((n, s))
        # Minibatch rows by one index_select over [N * samples, features] (~8x faster than x[hosts, idx]).
        base = torch.arange(n)[:, None] * self.x_train.shape[1]
        x_rows, y_rows = self.x_train.view(-1, MAX_FEATURES), self.y_train.view(-1)
        learn_seg = torch.cat([torch.ones(n, 1, dtype=torch.bool), learns], dim=1)  # [N, S+1]: segments that step
        counts_t = torch.from_numpy(counts)
        plans = self._plans(alpha, iso_weight, probe=False)
        for k in range(num_batches):
            idx = (base + order[:, k * bs : (k + 1) * bs]).reshape(-1)
            b = idx.shape[0] // n
            rows = (k * bs + torch.arange(b))[None, :] < counts_t[:, None]  # [N, b]
            taking = rows.any(dim=1)  # hosts with samples in this minibatch
            weights = self._weights(grad=True)
            x = x_rows.index_select(0, idx).view(n, b, MAX_FEATURES).mT
            out = self._forward(weights, x, alpha, iso_weight, plans=plans)
            y = y_rows.index_select(0, idx).view(n, b)
            size = rows.sum(dim=1).clamp(min=1).float()
            loss = self._losses(out.logits, y, rows, size)
            total = loss.sum()
            if out.isolated is not None:
                hosts, weight, iso_logits = out.isolated
                iso = self._losses(iso_logits, y.index_select(0, hosts), rows.index_select(0, hosts), size[hosts])
                total = total + (weight * iso).sum()
            grad = weights.flat_grad(total) * self.real
            with torch.no_grad():
                tk = taking.numpy()
                for seg, (start, end) in enumerate(lay.bounds):
                    on = taking & learn_seg[:, seg]
                    if not bool(on.any()):
                        continue
                    g = grad[:, start:end]
                    norm = g.square().sum(dim=1).sqrt()  # clip_grad_norm_ over the host, or over one seed
                    coef = (self.max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
                    g = g * coef[:, None]
                    self._adam(seg, g, lr, on)
                    if seg == 0:
                        grad_norms[:, k] = norm.numpy()
                        sq = g.square() @ lay.layer_weights
                        layer_grad[tk] += (sq / self.weight_count).sqrt().numpy()[tk]
                    else:  # the clipped gradient's RMS over the seed's real parameters
                        rms = norm * coef / self.seed_params[:, seg - 1].clamp(min=1).sqrt()
                        seed_grad[:, seg - 1] += np.where(on.numpy(), rms.numpy(), 0.0)
                losses[:, k] = loss.detach().numpy()
        took = np.arange(max(num_batches, 1))[None, :] < batches[:, None]
        means, variances, norm_means = [], [], []
        for i in range(n):
            mine = losses[i, took[i]]
            means.append(float(np.mean(mine)) if mine.size else 0.0)
            variances.append(float(np.var(mine)) if mine.size else 0.0)
            norm_means.append(float(np.mean(grad_norms[i, took[i]])) if mine.size else 0.0)
        per = np.maximum(batches, 1)[:, None]
        stats = self._probe(alpha, means, variances, norm_means, layer_grad / per, seed_grad / per)
        return [st if act[i] else None for i, st in enumerate(stats)]

    def _adam(self, seg: int, grad: torch.Tensor, lr: torch.Tensor, on: torch.Tensor) -> None:
        """torch.optim.Adam's update (single-tensor form, its op order) of segment ``seg`` of the hosts that
        are ``on``: in place when all are (most minibatches), else on those rows, gathered and put back."""
        start, end = self.layout.bounds[seg]
        self.steps[:, seg] += on.float()
        rows = None if bool(on.all()) else torch.nonzero(on)[:, 0]
        step = self.steps[:, seg, None] if rows is None else self.steps[rows, seg, None]
        lr_on = lr[:, None] if rows is None else lr[rows, None]
        p, m, v = (t[:, start:end] for t in (self.params, self.exp_avg, self.exp_avg_sq))
        if rows is not None:
            grad = grad.index_select(0, rows)
            p, m, v = (t.index_select(0, rows) for t in (p, m, v))
        m.lerp_(grad, 1 - BETA1)
        v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
        step_size = lr_on / (1 - BETA1**step)
        denom = (v.sqrt() / (1 - BETA2**step).sqrt()).add_(EPS)
        p.sub_(step_size * m / denom)
        if rows is not None:
            for full, part in zip((self.params, self.exp_avg, self.exp_avg_sq), (p, m, v), strict=True):
                full[:, start:end].index_copy_(0, rows, part)

    def _weights(self, grad: bool) -> _Weights:
        return _Weights(self.layout, self.params, self.seed_hidden.max(axis=0).tolist(), grad)

    def _plans(self, alpha: torch.Tensor, iso_weight: torch.Tensor, probe: bool) -> list[_SeedPlan]:
        """Each slot's `_SeedPlan` for passes with these α and isolated-path weights."""
        plans = []
        for j in range(self.num_slots):
            present = self.present[:, j]
            blend, learn = present & (alpha[:, j] > 0), iso_weight[:, j] > 0
            # Slot 0 reads the data, which has no gradient, so its isolated path (the seed on the detached
            # input) is the blended pass's computation: one pass serves both.  Later slots read a live input.
            run = (present if probe else blend) | (learn if j == 0 else blend)  # blend is within present
            run_hosts, blend_hosts, learn_hosts = (torch.nonzero(m)[:, 0] for m in (run, blend, learn))
            position = torch.cumsum(run, 0) - 1  # host -> its row in the pass over run_hosts
            plans.append(
                _SeedPlan(
                    run=run_hosts,
                    nonlinear=self.nonlinear[run_hosts, j, None, None],
                    blend=blend_hosts,
                    blend_rows=_rows_in(blend_hosts, run_hosts, position),
                    blend_alpha=alpha[blend_hosts, j][:, None, None],
                    learn=learn_hosts,
                    learn_rows=_rows_in(learn_hosts, run_hosts, position) if j == 0 else None,
                    learn_nonlinear=self.nonlinear[learn_hosts, j, None, None],
                    iso_weight=iso_weight[learn_hosts, j],
                )
            )
        return plans

    def _forward(self, params: _Weights, x: torch.Tensor, alpha: torch.Tensor, iso_weight: torch.Tensor,
                 probe: bool = False, plans: list[_SeedPlan] | None = None) -> _Pass:  # fmt: skip
        """`HostMLP.forward` for every host at once, feature-major: x [N, MAX_FEATURES, n], logits [N, K, n].
        ``plans``: `_plans(alpha, iso_weight, probe)`, if the caller has them (they hold for an epoch)."""
        if x.requires_grad:
            raise ValueError("the input must be data: slot 0's seed pass is shared on that ground")
        plans = plans if plans is not None else self._plans(alpha, iso_weight, probe)
        last = self.layout.num_layers - 1
        h = x
        slot_out: list[torch.Tensor] = []
        deltas: list[torch.Tensor | None] = []
        hidden: list[torch.Tensor] = []
        # Every learning seed's isolated path as one stream of rows through the layers after its slot
        # (`HostMLP._downstream`: detached weights): rows join at their slot, one matmul a layer for all.
        iso_h: torch.Tensor | None = None
        iso_hosts, iso_weights = torch.zeros(0, dtype=torch.long), torch.zeros(0)  # each row's host, its 1 − α
        for j in range(last + 1):
            u = h
            h = torch.baddbmm(params.b[j][:, :, None], params.w[j], h)
            if iso_h is not None:
                w, b = params.w[j].detach().index_select(0, iso_hosts), params.b[j].detach().index_select(0, iso_hosts)
                iso_h = torch.baddbmm(b[:, :, None], w, iso_h)
            if j == last:
                break
            h = torch.relu(h)
            if iso_h is not None:
                iso_h = torch.relu(iso_h)
            out, delta, plan = h, None, plans[j]
            seed_out = self._seed(params, j, u, plan.run, plan.nonlinear) if plan.run.numel() else None
            if plan.blend.numel():
                assert seed_out is not None  # blending hosts are in the pass
                blended = seed_out if plan.blend_rows is None else seed_out.index_select(0, plan.blend_rows)
                out = h.index_add(0, plan.blend, plan.blend_alpha * blended)
            if plan.learn.numel():
                if j == 0:
                    assert seed_out is not None  # slot 0's learning hosts are in the pass
                    own = seed_out if plan.learn_rows is None else seed_out.index_select(0, plan.learn_rows)
                else:
                    own = self._seed(params, j, u.detach(), plan.learn, plan.learn_nonlinear)
                seeded = h.detach().index_select(0, plan.learn) + own
                iso_h = seeded if iso_h is None else torch.cat([iso_h, seeded])
                iso_hosts = torch.cat([iso_hosts, plan.learn])
                iso_weights = torch.cat([iso_weights, plan.iso_weight])
            if probe and seed_out is not None:  # what blending each planted seed in would do (for the blend gain)
                delta = torch.zeros_like(h).index_copy(0, plan.run, seed_out.detach())
            slot_out.append(out)
            deltas.append(delta)
            hidden.append(h)
            h = out
        logits = h.masked_fill(~self.classes[:, :, None], -math.inf)
        isolated = None
        if iso_h is not None:
            iso_logits = iso_h.masked_fill(~self.classes.index_select(0, iso_hosts)[:, :, None], -math.inf)
            isolated = (iso_hosts, iso_weights, iso_logits)
        return _Pass(logits, slot_out, deltas, hidden, isolated)

    def _seed(self, params: _Weights, slot: int, u: torch.Tensor, hosts: torch.Tensor,
              nonlinear: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The seed at ``slot`` of each of ``hosts`` on their inputs ``u`` [N, in, n]: [len(hosts), width, n].
        ``nonlinear`` [len(hosts), 1, 1]: whether each seed has a ReLU (MLP) or not (low-rank)."""
        u = u.index_select(0, hosts)
        up, up_b = params.up[slot].index_select(0, hosts), params.up_b[slot].index_select(0, hosts)
        down, down_b = params.down[slot].index_select(0, hosts), params.down_b[slot].index_select(0, hosts)
        z = torch.baddbmm(up_b[:, :, None], up, u)
        # ReLU for MLP seeds, identity for low-rank ones, as relu(z) = z + relu(-z): forward and backward
        # measured 1.1 ms on [64, 32, 128], against 2.9 ms with z.clamp (its backward is a torch.where, slow
        # on CPU) and 1.9 ms with torch.maximum against a per-host floor.
        z = z + nonlinear * torch.relu(-z)
        return torch.baddbmm(down_b[:, :, None], down, z)

    @staticmethod
    def _losses(logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """Per host: mean cross-entropy over its real samples ([N]); logits [N, K, n], y [N, n]."""
        # log_softmax over dim 1 of [N, K, n]: 75 us here, against ~1 ms over a last dim of 10 classes.
        nll = -torch.log_softmax(logits, dim=1).gather(1, y[:, None, :])[:, 0, :]
        return (nll * rows).sum(dim=1) / size

    def _probe(self, alpha: torch.Tensor, train_loss: list[float], loss_variance: list[float],
               grad_norm: list[float], layer_grad: np.ndarray, seed_grad: np.ndarray) -> list[EpochStats]:  # fmt: skip
        """`TorchHost._probe` for every host: one validation forward/backward without an update."""
        n, lay = self.num_hosts, self.layout
        rows = torch.arange(self.x_val.shape[1])[None, :] < self.n_val[:, None]
        zeros = torch.zeros(n, self.num_slots)
        # Leaves that want gradients, so that the slot outputs have them (the weights' own are not taken).
        out = self._forward(self._weights(grad=True), self.x_val.mT, alpha, zeros, probe=True)
        loss = self._losses(out.logits, self.y_val, rows, self.n_val)
        grads = torch.autograd.grad(loss.sum(), out.slot_out)
        with torch.no_grad():
            units = self.n_val * self.width
            pressure = torch.stack([(g.square().sum(dim=(1, 2)) / units).sqrt() for g in grads], dim=1)
            gain = torch.zeros(n, self.num_slots)
            for s, (g, delta) in enumerate(zip(grads, out.deltas, strict=True)):
                if delta is not None:
                    gain[:, s] = torch.where(
                        self.present[:, s], -(g * delta).sum(dim=(1, 2)) / loss.clamp(min=1e-6), 0.0
                    )
            # A dead unit is <= 0 on every real sample: its max over them (padding at -1) is <= 0.  (amax and
            # max(dim).indices: ~4x and ~5x faster than .all() and argmax over these shapes here.)
            pad = ~rows[:, None, :]
            dead = torch.stack([(h.masked_fill(pad, -1.0).amax(dim=2) <= 0).float().mean(dim=1) for h in out.hidden], 1)
            correct = (out.logits.max(dim=1).indices == self.y_val) & rows
            acc = correct.sum(dim=1) / self.n_val
            host = lay.bounds[0][1]
            w_sq = self.params[:, :host].square() * self.real[:, :host]
            weight_rms = ((w_sq @ lay.layer_weights) / self.weight_count).sqrt()
        # finite() once per array, not per host: the per-host calls were ~5% of an epoch at 64 hosts.  Each host
        # gets row views (rows do not overlap, so no host sees another's values).
        val_loss = loss.detach().tolist()
        weight_rms_f, layer_grad_f, pressure_f = (
            finite(weight_rms.numpy()),
            finite(layer_grad),
            finite(pressure.numpy()),
        )
        dead_f = finite(torch.cat([dead, torch.zeros(n, 1)], dim=1).numpy())
        seed_grad_f, gain_f, acc_l = finite(seed_grad), finite(gain.numpy()), acc.tolist()
        stats = [
            EpochStats(
                val_acc=float(acc_l[i]),
                val_loss=finite_or_cap(val_loss[i]),
                train_loss=finite_or_cap(train_loss[i]),
                loss_variance=finite_or_cap(loss_variance[i]),
                grad_norm=finite_or_cap(grad_norm[i]),
                layer_weight_rms=weight_rms_f[i],
                layer_grad_rms=layer_grad_f[i],
                layer_dead_fraction=dead_f[i],
                slot_pressure=pressure_f[i],
                seed_grad_rms=seed_grad_f[i],
                seed_blend_gain=gain_f[i],
            )
            for i in range(n)
        ]
        return stats
