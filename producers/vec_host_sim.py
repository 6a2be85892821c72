"""`VecHostSim`: host-sim for N environments at once, numpy arrays instead of N `HostEnv` objects.

Env i behaves exactly like ``make_env("host-sim", seed=seeds[i])`` (a `HostEnv` over `SurrogateHost`):
the same task stream, the same random draws, the same lifecycle, rewards and observations, bit for
bit (tests/producers/test_vec_host_sim.py steps both side by side).  The state is one `VecHostState`
(producers/vec_host_features.py): a row per env, a column per slot.  What each step does, in the
scalar env's order: the chosen ops (germinate / advance / cull / LR) as masked array updates, the
alpha ramp, one surrogate epoch, the measurement, the reward and plateau, the clock-driven slot
transitions, then all N observations as one `PackedGraphs` and the masks [N, 6*S*B].

Randomness: each env keeps its own ``np.random.Generator``, seeded as the scalar env seeds its task
(``default_rng([split code, task seed])``, task seeds spawned from ``SeedSequence([split code, seed])``;
vec_seeding.py does both as array code, bit for bit), and makes the scalar surrogate's draws in its
order.  Only those calls run per env in Python: the planting draws of germinating envs (``lognormal``,
``random``), then per env the spike test (``random``, maybe ``uniform``) and the measurement noise
(``standard_normal``, into a preallocated row).  What depends on the LR step only (speed, noise floor,
readiness rate, spike probability) is tabulated from the scalar code's own Python float expressions;
the other transcendentals go through ``math`` like the scalar code's (`pymap`, ~0.1 µs a value), so no
1-ulp difference of numpy's SIMD exp / log1p / pow on some CPU can move a reward or a plateau count.
Task resets (every ``epoch_budget`` steps) draw per env in Python; their math is array code again.

Profile (cProfile, the 2-core dev VM).  Scalar (SyncVecEnv over 64 HostEnvs): ~340 µs per env step
under the profiler (~150-200 µs without), of which `HostFeatures.graph` 34%, `SurrogateHost.train_epoch`
19%, `_stats` 12%, `joint_action_mask` 9%, `PackedGraphs.concat` 9%, resets 5%.  Here, N=256, per env
step (perf_counter, by part): the per-env generator calls ~2.8 µs, the observation ~3 µs (a third of it
the ``math.log1p`` map), the measurement ~1.4 µs, the epoch ~1 µs, resets ~1.5 µs amortized (per env:
~25 µs of draws; seeding through numpy's SeedSequence / default_rng cost ~60 µs more before
vec_seeding.py), and ~150 numpy calls per step whose fixed cost (~0.5 ms a step here) dominates at
small N.  bench/vec_envs.py has the rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import NUM_OPS, OP_ADVANCE, OP_CULL, OP_GERMINATE, OP_LR_DOWN, OP_LR_UP, host_schema
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.host_backend import SPLIT_CODES, HostConfig, HostShape
from tamiyo.producers.host_episode import PLATEAU_LOSS_RATIO
from tamiyo.producers.host_sim import SimParams
from tamiyo.producers.seed_slots import Stage
from tamiyo.producers.vec_env import VecObservation, VecStepResult
from tamiyo.producers.vec_host_features import ADVANCE_TO, HOLDS, LEARNING, VecHostFeatures, VecHostState, pymap
from tamiyo.producers.vec_seeding import TaskSeedStreams, seed_generators

# SurrogateHost.new_task's draws: num classes ~ integers(3, 11), input width ~ choice(INPUT_DIMS).
_CLASSES = range(3, 11)
_INPUT_DIMS = [20, 32, 64]
_INITIAL_LR = 0.01  # HostShape.initial_lr of every surrogate task
_LR_OPT_STEPS = (-1, 0, 1)  # integers(-1, 2)
# What a new task starts at zero (Episode.start, fresh SeedSlots, SurrogateHost.new_task).
_ZEROED_AT_RESET = ("epoch", "lr_step", "plateau", "quality", "readiness", "prev_alpha", "alpha", "epochs_in_stage",
                    "params", "acc_at_germination", "embargo_left")  # fmt: skip


def _task_shapes(num_slots: int, width: int) -> list[HostShape]:
    """Every shape a surrogate task can have, indexed [input dim, classes] in row-major order."""
    shapes = []
    for dim in _INPUT_DIMS:
        for k in _CLASSES:
            fan_in = (dim, *([width] * num_slots))
            fan_out = (*([width] * num_slots), k)
            base = sum(i * o + o for i, o in zip(fan_in, fan_out, strict=True))
            shapes.append(HostShape(fan_in, fan_out, width, base, k, initial_lr=_INITIAL_LR))
    return shapes


class _LRTables:
    """What `SurrogateHost.train_epoch` computes from the LR alone, per [lr step + lr_steps, lr_opt + 1]."""

    def __init__(self, cfg: HostConfig, p: SimParams) -> None:
        steps = range(-cfg.lr_steps, cfg.lr_steps + 1)
        # Python floats, the scalar expressions verbatim: the tables hold the scalar env's exact values.
        lr_rel = [[(_INITIAL_LR * 2.0**step / 0.01) / 2.0**opt for opt in _LR_OPT_STEPS] for step in steps]
        self.lr_rel = np.array(lr_rel)
        self.ready = np.array([[min(r, 2.0) ** 0.5 for r in row] for row in lr_rel])
        self.floor = np.array([[p.noise_floor * r for r in row] for row in lr_rel])
        self.speed = np.array([[1.0 - math.exp(-p.speed * 1.1 * min(r, 4.0) ** 0.7) for r in row] for row in lr_rel])
        blending = range(cfg.num_slots + 1)
        self.spike = np.array(
            [[[p.spike_prob * max(r, 1.0) ** 2 * (1.0 + 2.0 * nb) for nb in blending] for r in row] for row in lr_rel]
        )


class VecHostSim:
    """N host-sim envs behind the `VecEnv` API (producers/vec_env.py); see the module docstring."""

    def __init__(
        self,
        num_envs: int,
        seeds: Sequence[int],
        config: HostConfig | None = None,
        params: SimParams | None = None,
    ) -> None:
        cfg, p = config or HostConfig(), params or SimParams()
        if num_envs < 1 or len(seeds) != num_envs:
            raise ValueError(f"need num_envs >= 1 and one seed per env, got {num_envs} envs, {len(seeds)} seeds")
        if cfg.split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}")
        self.config, self.params, self.num_envs = cfg, p, num_envs
        s, b = cfg.num_slots, len(CATALOG)
        self.schema = host_schema(s, b)
        self._code = SPLIT_CODES[cfg.split]
        self._streams = TaskSeedStreams(self._code, seeds)
        self._rngs = [np.random.default_rng(0) for _ in range(num_envs)]  # replaced by every task
        self._features = VecHostFeatures(cfg, CATALOG, num_envs, _task_shapes(s, p.width))
        self._lr = _LRTables(cfg, p)
        self._gain_profile = np.linspace(1.4, 0.8, s)
        self._capacity = np.array([bp.sim_capacity for bp in CATALOG])
        self._noise = np.zeros((num_envs, 6 + 2 * s))  # the per-step measurement noise, drawn in place
        self._noise_rows = list(self._noise)
        self.state = VecHostState.zeros(num_envs, s, b)
        self._obs: VecObservation | None = None

    # ------------------------------------------------------------------ VecEnv

    def reset(self, seeds: Sequence[int | None] | None = None) -> VecObservation:
        seeds = list(seeds) if seeds is not None else [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        self._begin_tasks(np.arange(self.num_envs), seeds)
        self._obs = self._observe()
        return self._obs

    def step(self, actions: np.ndarray) -> VecStepResult:
        if self._obs is None:
            raise RuntimeError("call reset() first")
        st, cfg = self.state, self.config
        op, slot, bp = self._checked(actions, self._obs.action_masks)
        self._apply(op, slot, bp)
        # seed_slots.ramp_alphas: blending seeds past their first epoch move one ramp step.
        ramp = (st.stage == Stage.BLENDING) & (st.epochs_in_stage > 0)
        st.alpha = np.where(ramp, np.minimum(1.0, st.alpha + 1.0 / cfg.blend_epochs), st.alpha)
        held = (st.params * HOLDS[st.stage]).sum(axis=1)  # rent is charged on what the seeds hold during the epoch
        acc_before, loss_before = st.val_acc, st.val_loss
        lr_rel, n_blending = self._train_epoch(op == OP_GERMINATE, slot, bp)
        st.epoch = st.epoch + 1  # the surrogate's epoch count moves before it measures, the episode's after
        self._measure(slice(None), lr_rel, n_blending, self._noise)
        # Episode.close_epoch: reward = accuracy gain - rent; the plateau counter.
        rewards = (st.val_acc - acc_before) - cfg.rent_rate * held / st.base
        st.prev_val_acc, st.prev_val_loss = acc_before, loss_before
        improved = st.val_loss < st.best_val_loss * PLATEAU_LOSS_RATIO
        st.best_val_loss = np.where(improved, st.val_loss, st.best_val_loss)
        st.plateau = np.where(improved, 0, st.plateau + 1)
        self._end_epoch()
        terminated = st.epoch >= cfg.epoch_budget
        ended = np.flatnonzero(terminated)
        final_graphs: PackedGraphs | None = None
        if ended.size:
            graphs, _ = self._features.observe(st)
            final_graphs = graphs if ended.size == self.num_envs else graphs.select(ended)
            self._begin_tasks(ended, [None] * ended.size)
        self._obs = self._observe()
        return VecStepResult(self._obs, rewards, terminated, np.zeros(self.num_envs, np.bool_), final_graphs)

    # ------------------------------------------------------------------ internals

    def _observe(self) -> VecObservation:
        graphs, masks = self._features.observe(self.state)
        return VecObservation(graphs, masks)

    def _checked(self, actions: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, s, b = self.num_envs, self.config.num_slots, len(CATALOG)
        a = np.asarray(actions).reshape(n, -1)[:, :3].astype(np.int64)
        op, slot, bp = a[:, 0], a[:, 1], a[:, 2]
        in_range = (op >= 0) & (op < NUM_OPS) & (slot >= 0) & (slot < s) & (bp >= 0) & (bp < b)
        joint = np.where(in_range, (op * s + slot) * b + bp, 0)
        bad = np.flatnonzero(~(in_range & masks[np.arange(n), joint]))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"env {i}: action {a[i].tolist()} is masked out")
        return op, slot, bp

    def _apply(self, op: np.ndarray, slot: np.ndarray, bp: np.ndarray) -> None:
        """HostEnv._apply for all envs: seed_slots' germinate / advance / cull and the LR steps."""
        st = self.state
        g = np.flatnonzero(op == OP_GERMINATE)
        if g.size:
            gs = slot[g]
            st.stage[g, gs], st.epochs_in_stage[g, gs] = Stage.GERMINATED, 0
            st.blueprint[g, gs], st.alpha[g, gs] = bp[g], 0.0
            st.params[g, gs] = st.costs[g, gs, bp[g]]
            st.acc_at_germination[g, gs] = st.val_acc[g]
            st.readiness[g, gs], st.prev_alpha[g, gs] = 0.0, 0.0  # SurrogateHost.plant (quality needs the draws)
        v = np.flatnonzero(op == OP_ADVANCE)
        if v.size:
            vs = slot[v]
            target = ADVANCE_TO[st.stage[v, vs]]
            st.stage[v, vs], st.epochs_in_stage[v, vs] = target, 0
            full = (target == Stage.PROBATIONARY) | (target == Stage.FOSSILIZED)
            ramp_start = 1.0 / self.config.blend_epochs
            st.alpha[v, vs] = np.where(target == Stage.BLENDING, ramp_start, np.where(full, 1.0, st.alpha[v, vs]))
        c = np.flatnonzero(op == OP_CULL)
        if c.size:
            cs = slot[c]
            st.stage[c, cs], st.epochs_in_stage[c, cs] = Stage.CULLED, 0
            st.alpha[c, cs], st.params[c, cs] = 0.0, 0
            st.quality[c, cs], st.readiness[c, cs], st.prev_alpha[c, cs] = 0.0, 0.0, 0.0  # SurrogateHost.remove
        st.lr_step = st.lr_step + (op == OP_LR_UP) - (op == OP_LR_DOWN)

    def _train_epoch(self, germinating: np.ndarray, slot: np.ndarray, bp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SurrogateHost.plant for the germinating envs, then its train_epoch; returns (lr_rel, n_blending)."""
        st, p, t = self.state, self.params, self._lr
        lr_at = (st.lr_step + self.config.lr_steps, st.lr_opt + 1)
        n_blending = (st.alpha > st.prev_alpha).sum(axis=1)
        spike_p = t.spike[(*lr_at, n_blending)].tolist()
        # The only per-env Python of a step: each env's generator calls, in the scalar surrogate's order.
        g = np.flatnonzero(germinating)
        planted = [(self._rngs[i].lognormal(0.0, 0.3), self._rngs[i].random()) for i in g.tolist()]
        spiked, drops = [], []
        for i, (rng, p_i, row) in enumerate(zip(self._rngs, spike_p, self._noise_rows, strict=True)):
            if rng.random() < p_i:
                spiked.append(i)
                drops.append(rng.uniform(0.02, 0.12))
            rng.standard_normal(out=row)
        if g.size:
            gs, draws = slot[g], np.array(planted)
            q = st.slot_gain[g, gs] * self._capacity[bp[g]] * draws[:, 0] * p.seed_gain  # the scalar's order
            st.quality[g, gs] = np.where(draws[:, 1] < p.harmful_prob, -0.6 * q, q)
        lr_rel = t.lr_rel[lr_at]
        trains = LEARNING[st.stage]
        ready = st.readiness + (1.0 - st.readiness) * p.readiness_rate * t.ready[lr_at][:, None]
        st.readiness = np.where(trains, ready, st.readiness)
        acc, capacity = st.acc, st.base_capacity
        for i in range(self.config.num_slots):  # the slots in order: acc and capacity are running sums
            a, prev, r = st.alpha[:, i], st.prev_alpha[:, i], st.readiness[:, i]
            acc = np.where(a > prev, acc - p.shock * (a - prev) * (1.0 - r), acc)
            capacity = capacity + a * st.quality[:, i] * r
        st.prev_alpha = st.alpha.copy()
        decay = pymap(math.exp, -np.maximum(capacity, 0.0))
        ceiling = st.chance + (st.top - st.chance) * (1.0 - decay)
        target = ceiling - t.floor[lr_at]
        acc = acc + t.speed[lr_at] * (target - acc)
        if spiked:
            acc[spiked] -= np.array(drops)
        st.acc = np.minimum(np.maximum(acc, st.chance * 0.5), 0.999)
        return lr_rel, n_blending

    def _measure(
        self, rows: slice | np.ndarray, lr_rel: np.ndarray | float, n_blending: np.ndarray | int, noise: np.ndarray
    ) -> None:
        """SurrogateHost._stats for ``rows`` (after its epoch count moved on), from their noise [rows, 6 + 2S]."""
        st, p, s = self.state, self.params, self.config.num_slots
        acc = np.minimum(np.maximum(st.acc[rows] + p.obs_noise * noise[:, 0], 0.0), 1.0)
        chance = st.chance[rows]
        skill = np.maximum((acc - chance) / (1.0 - chance), 0.0)
        shaped = np.fromiter(map(math.pow, (1.0 - skill).tolist(), [1.5] * skill.size), np.float64, skill.size)
        val_loss = st.log_k[rows] * shaped + 0.05 + 0.01 * np.abs(noise[:, 1])
        gap = np.maximum(st.top[rows] - acc, 0.0)
        e = pymap(
            math.exp, np.concatenate([0.2 * noise[:, 3:4], 0.1 * noise[:, 4:5], 0.25 * noise[:, 6 + s :]], axis=1)
        )
        q, r = st.quality[rows], st.readiness[rows]
        seeded = q != 0.0
        st.val_acc = _put(st.val_acc, rows, acc)
        st.val_loss = _put(st.val_loss, rows, val_loss)
        st.train_loss = _put(st.train_loss, rows, 0.92 * val_loss + 0.01 * np.abs(noise[:, 2]))
        st.loss_variance = _put(st.loss_variance, rows, 0.002 * lr_rel * (1.0 + n_blending) * e[:, 0])
        st.grad_norm = _put(st.grad_norm, rows, (0.5 + 2.0 * gap) * e[:, 1])
        st.weight_rms = _put(st.weight_rms, rows, 0.3 + 0.01 * st.epoch[rows])  # the surrogate's epoch count
        st.layer_grad_rms = _put(st.layer_grad_rms, rows, 0.001 * (0.2 + gap))
        st.seed_blend_gain = _put(
            st.seed_blend_gain, rows, np.where(seeded, 0.6 * q * r + 0.08 * noise[:, 6 : 6 + s], 0.0)
        )
        st.seed_grad_rms = _put(st.seed_grad_rms, rows, np.where(seeded, 0.002 * (1.0 - r), 0.0))
        st.slot_pressure = _put(st.slot_pressure, rows, 0.002 * st.slot_gain[rows] * (0.3 + gap)[:, None] * e[:, 2:])

    def _end_epoch(self) -> None:
        """seed_slots.end_epoch: the clock-driven transitions (decided on the stages before any), then ageing."""
        st, cfg = self.state, self.config
        culled = (st.stage == Stage.CULLED) & (st.epochs_in_stage >= 1)
        embargoed = st.stage == Stage.EMBARGOED
        resetting = (st.stage == Stage.RESETTING) & (st.epochs_in_stage >= 1)
        st.embargo_left = np.where(culled, cfg.embargo_epochs, st.embargo_left - embargoed)
        st.blueprint = np.where(culled, -1, st.blueprint)
        expired = embargoed & (st.embargo_left <= 0)
        stage = np.where(culled, Stage.EMBARGOED, np.where(expired, Stage.RESETTING, st.stage))
        st.stage = np.where(resetting, Stage.DORMANT, stage)
        st.epochs_in_stage = np.where(culled | expired | resetting, 0, st.epochs_in_stage) + 1

    def _begin_tasks(self, rows: np.ndarray, seeds: Sequence[int | None]) -> None:
        """HostEnv.reset + SurrogateHost.new_task for ``rows``: per-env draws, then array code."""
        st, s = self.state, self.config.num_slots
        m = rows.size
        k, dim, opt = np.zeros(m, np.int64), np.zeros(m, np.int64), np.zeros(m, np.int64)
        top, capacity, gain, noise = np.zeros(m), np.zeros(m), np.zeros((m, s)), np.zeros((m, 6 + 2 * s))
        # The task seeds (spawned from each env's stream unless given) and the generators they seed.
        task_seeds = [int(x) if x is not None else 0 for x in seeds]
        spawned = [j for j, x in enumerate(seeds) if x is None]
        for j, x in zip(spawned, self._streams.spawn(rows[spawned]), strict=True):
            task_seeds[j] = x
        one_word = [j for j, x in enumerate(task_seeds) if 0 <= x <= 0xFFFFFFFF]  # all spawned ones
        seed_generators(self._rngs, rows[one_word].tolist(), self._code, [task_seeds[j] for j in one_word])
        for j in sorted(set(range(m)) - set(one_word)):
            self._rngs[rows[j]] = np.random.default_rng([self._code, task_seeds[j]])
        for j, rng in enumerate([self._rngs[i] for i in rows.tolist()]):
            k[j] = rng.integers(_CLASSES.start, _CLASSES.stop)
            top[j] = rng.uniform(0.85, 0.99)
            capacity[j] = rng.uniform(1.0, 2.0)
            gain[j] = rng.uniform(0.2, 1.2, size=s)
            opt[j] = rng.integers(-1, 2)
            dim[j] = _INPUT_DIMS[rng.integers(0, len(_INPUT_DIMS))]  # what rng.choice(_INPUT_DIMS) draws
            noise[j] = rng.standard_normal(6 + 2 * s)  # the untrained host's measurement
        shape = np.searchsorted(_INPUT_DIMS, dim) * len(_CLASSES) + (k - _CLASSES[0])
        f = self._features
        st.shape[rows], st.lr_opt[rows] = shape, opt
        st.chance[rows], st.top[rows], st.base_capacity[rows] = 1.0 / k, top, capacity
        st.slot_gain[rows] = gain * self._gain_profile
        st.base[rows], st.budget_total[rows], st.costs[rows] = f.base[shape], f.budget_total[shape], f.costs[shape]
        st.log_k[rows], st.log_c[rows] = [math.log(c) for c in k.tolist()], f.log_c[shape]
        for name in _ZEROED_AT_RESET:
            getattr(st, name)[rows] = 0
        st.stage[rows], st.blueprint[rows] = Stage.DORMANT, -1
        st.acc[rows] = st.chance[rows]
        self._measure(rows, 1.0, 0, noise)
        st.prev_val_acc[rows], st.prev_val_loss[rows] = st.val_acc[rows], st.val_loss[rows]
        st.best_val_loss[rows] = st.val_loss[rows]


def _put(full: np.ndarray, rows: slice | np.ndarray, values: np.ndarray) -> np.ndarray:
    """``full`` with ``rows`` replaced: a fresh array for all rows (so views handed out stay valid)."""
    if isinstance(rows, slice):
        return values
    full[rows] = values
    return full
