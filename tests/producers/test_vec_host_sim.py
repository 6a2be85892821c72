"""`VecHostSim` is N host-sim envs, exactly: stepped side by side with N scalar `HostEnv`s over `SurrogateHost`
(through `SyncVecEnv`) with the same actions, every observation graph, mask, reward, episode end and final
graph is bit-identical, over several episodes (autoresets included) and every lifecycle branch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tamiyo.contracts.graph import PackedGraphs
from tamiyo.contracts.host_schema import NUM_OPS, OP_CULL, OP_GERMINATE
from tamiyo.policy.model import ModelConfig, TamiyoGNN
from tamiyo.policy.model_policy import ModelPolicy
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.envs import make_env
from tamiyo.producers.host_env import HostConfig, HostEnv
from tamiyo.producers.host_sim import SimParams, SurrogateHost
from tamiyo.producers.rollout import RolloutCollector
from tamiyo.producers.seed_slots import Stage
from tamiyo.producers.vec_env import SyncVecEnv, VecObservation
from tamiyo.producers.vec_host_sim import VecHostSim
from tamiyo.producers.vec_rollout import VecRolloutCollector
from tamiyo.producers.vec_seeding import TaskSeedStreams, seed_generators

from .test_vec_rollout import assert_same_unrolls

# WAIT, GERMINATE, ADVANCE, CULL, LR_UP, LR_DOWN: favour the lifecycle ops so every branch is reached.
OP_WEIGHTS = np.array([1.0, 4.0, 6.0, 1.5, 1.0, 1.0])


def choose_actions(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One allowed action per env: an op by OP_WEIGHTS among the allowed ones, then a uniform allowed slot/bp."""
    n_b = len(CATALOG)
    actions = np.zeros((masks.shape[0], 3), dtype=np.int64)
    for i, mask in enumerate(masks):
        per_op = mask.reshape(NUM_OPS, -1)
        weights = OP_WEIGHTS * per_op.any(axis=1)
        op = int(rng.choice(NUM_OPS, p=weights / weights.sum()))
        allowed = np.flatnonzero(per_op[op])
        slot, bp = divmod(int(allowed[rng.integers(allowed.size)]), n_b)
        actions[i] = (op, slot, bp)
    return actions


def scalar_envs(seeds: list[int], config: HostConfig | None, params: SimParams | None) -> SyncVecEnv:
    if config is None and params is None:
        return SyncVecEnv([make_env("host-sim", seed=s) for s in seeds])
    cfg = config or HostConfig()
    return SyncVecEnv([HostEnv(SurrogateHost(cfg.num_slots, params), "host-sim", s, cfg, CATALOG) for s in seeds])


def assert_same_graphs(got: PackedGraphs, want: PackedGraphs) -> None:
    assert got.equals(want)
    for name, x in want.node_features.items():  # bit for bit (equals() would let -0.0 == 0.0 pass)
        y = got.node_features[name]
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    for key, e in want.edge_index.items():
        assert got.edge_index[key].dtype == e.dtype and got.edge_counts[key].dtype == want.edge_counts[key].dtype


def assert_same_obs(got: VecObservation, want: VecObservation) -> None:
    assert got.action_masks.dtype == want.action_masks.dtype
    assert np.array_equal(got.action_masks, want.action_masks)
    assert_same_graphs(got.graphs, want.graphs)


@dataclass
class Coverage:
    stages: set[int] = field(default_factory=set)
    ramping: bool = False  # a blending seed part-way up its alpha ramp
    lr_bounds: set[int] = field(default_factory=set)
    budget_out: bool = False  # a dormant slot that cannot afford any blueprint
    harmful: bool = False  # a seed of negative quality
    culls: int = 0
    episodes: int = 0
    lone_ends: int = 0  # steps at which only some of the envs ended

    def record(self, vec: VecHostSim, masks: np.ndarray, actions: np.ndarray) -> None:
        s = vec.state
        cfg = vec.config
        self.stages |= set(np.unique(s.stage).tolist())
        self.ramping |= bool(((s.stage == Stage.BLENDING) & (s.alpha > 0) & (s.alpha < 1)).any())
        self.lr_bounds |= set(np.intersect1d(s.lr_step, [-cfg.lr_steps, cfg.lr_steps]).tolist())
        germinable = masks.reshape(len(masks), NUM_OPS, cfg.num_slots, -1)[:, OP_GERMINATE].any(axis=2)
        self.budget_out |= bool(((s.stage == Stage.DORMANT) & ~germinable).any())
        self.harmful |= bool((s.quality < 0).any())
        self.culls += int((actions[:, 0] == OP_CULL).sum())


def run_side_by_side(
    seeds: list[int],
    first: list[int | None],
    steps: int,
    action_seed: int,
    config: HostConfig | None = None,
    params: SimParams | None = None,
    restart: dict[int, int] | None = None,
) -> Coverage:
    """Step both with the same actions; assert everything they return is identical; report what was reached.

    ``restart`` {step: env}: before that step, that env starts its next task early in both.  The envs of one
    VecHostSim otherwise always end their episodes together (a fixed epoch budget); this makes some end alone.
    """
    ref = scalar_envs(seeds, config, params)
    vec = VecHostSim(len(seeds), seeds, config, params)
    assert vec.schema == ref.schema and vec.num_envs == ref.num_envs
    want, got = ref.reset(first), vec.reset(first)
    got.graphs.validate(vec.schema)
    assert_same_obs(got, want)
    rng, cov = np.random.default_rng(action_seed), Coverage()
    for t in range(steps):
        if restart and t in restart:  # through the internals: the VecEnv API has no per-env reset
            i = restart[t]
            ref._observations[i] = ref.envs[i].reset()
            vec._begin_tasks(np.array([i]), [None])
            vec._obs = vec._observe()
            want = ref._batch()
        actions = choose_actions(want.action_masks, rng)
        w, g = ref.step(actions), vec.step(actions)
        cov.record(vec, want.action_masks, actions)
        assert g.rewards.dtype == np.float64 and g.rewards.tobytes() == w.rewards.tobytes()
        assert np.array_equal(g.terminated, w.terminated) and np.array_equal(g.truncated, w.truncated)
        assert (g.final_graphs is None) == (w.final_graphs is None)
        if w.final_graphs is not None and g.final_graphs is not None:
            assert_same_graphs(g.final_graphs, w.final_graphs)
            cov.episodes += w.final_graphs.num_graphs
            cov.lone_ends += w.final_graphs.num_graphs < len(seeds)
        assert_same_obs(g.observation, w.observation)
        want = w.observation
    return cov


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (1, 41), (3, 5), (17, 123)])
def test_equals_the_scalar_envs_over_several_episodes(n: int, seed: int) -> None:
    seeds = [seed + 7 * i for i in range(n)]
    first = [None if i % 2 else 1000 + seed + i for i in range(n)]  # explicit task seeds and seed streams
    cov = run_side_by_side(seeds, first, steps=4 * 30 + 7, action_seed=seed)
    assert cov.episodes == 4 * n
    if n == 17:  # big enough to reach every branch; checked so the equality above means something
        lifecycle = {Stage.DORMANT, Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.PROBATIONARY,
                     Stage.FOSSILIZED, Stage.CULLED, Stage.EMBARGOED, Stage.RESETTING}  # fmt: skip
        assert lifecycle <= cov.stages
        assert cov.ramping and cov.budget_out and cov.harmful and cov.culls > 0
        assert cov.lr_bounds == {-3, 3}


def test_envs_that_end_alone_give_their_final_graphs_alone() -> None:
    cov = run_side_by_side([5, 6, 7, 8], [None] * 4, steps=70, action_seed=2, restart={3: 1, 10: 3, 40: 1})
    # Envs 0 and 2 end after steps 30 and 60, env 1 after 33 and 70 (restarted again at 40), env 3 after 40 and 70.
    assert cov.episodes == 8 and cov.lone_ends == 5  # after steps 30, 33, 40, 60 and 70


def test_equals_the_scalar_envs_with_another_config() -> None:
    """Two slots, short embargo, long probation, one LR step, a tight budget, the eval split, noisier spikes."""
    cfg = HostConfig(num_slots=2, epoch_budget=12, rent_rate=0.01, param_budget=1.5, blend_epochs=2,
                     embargo_epochs=1, probation_epochs=2, lr_steps=1, split="eval")  # fmt: skip
    params = SimParams(width=6, spike_prob=0.2, harmful_prob=0.4, obs_noise=0.02)
    cov = run_side_by_side([1, 2, 3, 4, 5], [None, 9, None, 10, None], steps=5 * 12, action_seed=3, config=cfg,
                           params=params)  # fmt: skip
    assert cov.episodes == 25 and {Stage.FOSSILIZED, Stage.RESETTING} <= cov.stages and cov.lr_bounds == {-1, 1}


def test_equals_the_scalar_envs_with_every_fitted_parameter_moved() -> None:
    """`tamiyo calibrate` moves every field of calibration.FITTED: the vector env must follow each of them."""
    from tamiyo.producers.calibration import FITTED

    moved = {name: min(hi, max(lo, getattr(SimParams(), name) * 1.7 + 0.01)) for name, (_f, lo, hi) in FITTED.items()}
    cov = run_side_by_side([4, 5, 6], [None, 2, None], steps=90, action_seed=8, params=SimParams(**moved))
    assert cov.episodes >= 9


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 2**32),
    action_seed=st.integers(0, 2**16),
    steps=st.integers(1, 70),
    num_slots=st.integers(1, 3),
    epoch_budget=st.sampled_from([4, 30]),
    lr_steps=st.sampled_from([1, 3]),
    embargo=st.integers(0, 3),
    probation=st.integers(0, 2),
    blend=st.integers(1, 3),
    budget=st.sampled_from([0.5, 3.0]),
)
def test_random_configs_and_actions_equal_the_scalar_envs(
    n: int, seed: int, action_seed: int, steps: int, num_slots: int, epoch_budget: int, lr_steps: int,
    embargo: int, probation: int, blend: int, budget: float,
) -> None:  # fmt: skip
    cfg = HostConfig(num_slots=num_slots, epoch_budget=epoch_budget, lr_steps=lr_steps, embargo_epochs=embargo,
                     probation_epochs=probation, blend_epochs=blend, param_budget=budget)  # fmt: skip
    run_side_by_side([seed + i for i in range(n)], [None] * n, steps, action_seed, config=cfg, params=SimParams())


def test_array_seeding_is_numpys_seeding() -> None:
    """Task seeds spawned as arrays, and generators seeded in place, are numpy's own, bit for bit."""
    seeds = [0, 1, 12345, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 2**96 - 1, 2**96, 2**130 + 5]  # the last: numpy's
    for code in (0, 1):
        streams, ref = TaskSeedStreams(code, seeds), [np.random.SeedSequence([code, s]) for s in seeds]
        generators = [np.random.default_rng(0) for _ in seeds]
        rows = np.arange(len(seeds))
        for some in (rows, rows[::3], rows[1::2], rows):  # streams spawn at different paces
            got = streams.spawn(some)
            assert got == [int(ref[i].spawn(1)[0].generate_state(1)[0]) for i in some.tolist()]
            task_seeds = [*got[:-2], 0, 2**32 - 1]  # and the one-word extremes
            seed_generators(generators, some.tolist(), code, task_seeds)
            for i, task_seed in zip(some.tolist(), task_seeds, strict=True):
                want = np.random.default_rng([code, task_seed])
                assert generators[i].bit_generator.state == want.bit_generator.state
                assert generators[i].standard_normal(3).tobytes() == want.standard_normal(3).tobytes()


def test_huge_seeds_take_numpys_path_and_still_agree() -> None:
    """Stream seeds of more than 3 words and task seeds of more than one word are seeded by numpy itself."""
    run_side_by_side([2**100, 2**40, 7], [2**33, None, 0], steps=65, action_seed=1)


def test_masked_out_actions_and_bad_seeds_are_refused() -> None:
    vec = VecHostSim(2, [0, 1])
    with pytest.raises(RuntimeError):
        vec.step(np.zeros((2, 3), dtype=np.int64))
    obs = vec.reset([4, 5])
    assert not obs.action_masks[:, (2 * 3 + 0) * 3].any()  # nothing to advance yet
    with pytest.raises(ValueError, match="masked out"):
        vec.step(np.array([[0, 0, 0], [2, 0, 0]]))
    with pytest.raises(ValueError, match="masked out"):
        vec.step(np.array([[0, 0, 0], [1, 5, 0]]))  # slot out of range
    with pytest.raises(ValueError):
        vec.reset([1, 2, 3])
    with pytest.raises(ValueError):
        VecHostSim(2, [0])
    vec.step(np.zeros((2, 3), dtype=np.int64))  # a refused step changed nothing: WAIT is still fine


def test_vector_collector_over_vec_host_sim_equals_the_scalar_collector() -> None:
    schema = make_env("host-sim").schema
    torch.manual_seed(0)
    model = TamiyoGNN(schema, ModelConfig(hidden=16, layers=("sage",)))
    results = []
    for vector in (False, True):
        torch.manual_seed(7)  # the same sampling draws for both
        policy = ModelPolicy(model, version=3)
        seeds = [100 + i for i in range(4)]
        named = {"seed": 5, "actor_id": "a", "env_id": "host-sim"}
        collector: VecRolloutCollector | RolloutCollector
        if vector:
            collector = VecRolloutCollector(VecHostSim(4, seeds), policy, 12, **named)
        else:
            collector = RolloutCollector([make_env("host-sim", seed=s) for s in seeds], policy, 12, **named)
        unrolls = [u for _ in range(4) for u in collector.collect()]
        results.append((unrolls, collector.episodes, collector.env_steps))
    (want, want_eps, want_steps), (got, got_eps, got_steps) = results
    assert_same_unrolls(got, want)
    assert got_eps == want_eps and got_steps == want_steps
    assert got_eps, "the test should see episodes end"
