"""Invariants both host envs must keep: masks, lifecycle legality, determinism, reward accounting,
Leyline views.  host-sim runs many episodes; host-train (real training) a few short ones."""

from __future__ import annotations

import numpy as np
import pytest

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.contracts.host_schema import (
    DEFAULT_NUM_BLUEPRINTS,
    DEFAULT_NUM_SLOTS,
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OP_WAIT,
    SLOT_FEATURES,
    host_schema,
)
from tamiyo.contracts.packing import graphs_from_proto, unpack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.validation import validate_payload
from tamiyo.producers import lifecycle as lc
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.controllers import RandomController
from tamiyo.producers.envs import make_env
from tamiyo.producers.host_env import HostConfig, HostEnv
from tamiyo.producers.lifecycle import Cause, Stage

# (env name, episodes, epoch budget): host-train keeps its share of the runtime small.
ENVS = [("host-sim", 40, 30), ("host-train", 2, 12)]
STAGE_COLUMNS = [i for i, (name, _) in enumerate(SLOT_FEATURES) if name.startswith("stage_")]


def _make(name: str, budget: int, seed: int = 0) -> HostEnv:
    env = make_env(name, seed=seed, epoch_budget=budget)
    assert isinstance(env, HostEnv)
    return env


def _legal_by_the_table(env: HostEnv) -> np.ndarray:
    """The joint mask rebuilt independently from the lifecycle table and the env's rules."""
    s_n, b_n = env.num_slots, env.num_blueprints
    info = env.info()
    legal = np.zeros((NUM_OPS, s_n, b_n), dtype=bool)
    legal[OP_WAIT, 0, 0] = True
    for i, slot in enumerate(env.slots):
        if lc.is_legal(slot.stage, Stage.GERMINATED, Cause.GERMINATE):
            for b in range(b_n):
                legal[OP_GERMINATE, i, b] = info["blueprint_costs"][i][b] <= info["budget_left"]
        target = lc.advance_target(slot.stage)
        if target is not None and lc.is_legal(slot.stage, target, Cause.ADVANCE):
            ramp_done = slot.stage != Stage.BLENDING or slot.alpha >= 1.0
            probation_done = slot.stage != Stage.PROBATIONARY or slot.epochs_in_stage >= 1
            legal[OP_ADVANCE, i, 0] = ramp_done and probation_done
        legal[OP_CULL, i, 0] = lc.is_legal(slot.stage, Stage.CULLED, Cause.CULL)
    legal[OP_LR_UP, 0, 0] = info["lr_step"] < info["lr_steps"]
    legal[OP_LR_DOWN, 0, 0] = info["lr_step"] > -info["lr_steps"]
    return legal.reshape(-1)


@pytest.mark.parametrize(("name", "episodes", "budget"), ENVS)
def test_random_rollouts_keep_mask_graph_and_lifecycle_invariants(
    name: str, episodes: int, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: list[tuple[int, int, Cause]] = []
    real_transition = lc.transition

    def spy(src: int, dst: int, cause: Cause) -> int:
        recorded.append((src, dst, cause))
        return real_transition(src, dst, cause)

    monkeypatch.setattr(lc, "transition", spy)
    env = _make(name, budget)
    ctrl = RandomController(seed=1)
    ops_seen: set[int] = set()
    for ep in range(episodes):
        obs = env.reset(seed=100 + ep)
        for t in range(budget):
            obs.graph.validate(env.schema)
            assert obs.action_mask.dtype == np.bool_ and obs.action_mask.shape == (env.schema.joint_action_count,)
            assert obs.action_mask.any() and obs.action_mask[0]  # WAIT is always there
            np.testing.assert_array_equal(obs.action_mask, _legal_by_the_table(env))
            stages = np.array([s.stage for s in env.slots])
            one_hot = obs.graph.node_features["slot"][:, STAGE_COLUMNS]
            np.testing.assert_array_equal(one_hot.argmax(axis=1) + 1, stages)
            action = ctrl.act(obs, env.info())
            ops_seen.add(int(action[0]))
            recorded.clear()
            result = env.step(action)
            # Every stage change went through the table, and the chosen op caused the first one.
            for src, dst, cause in recorded:
                assert lc.is_legal(src, dst, cause)
            op, slot = int(action[0]), int(action[1])
            if op in (OP_GERMINATE, OP_ADVANCE, OP_CULL):
                src, dst, cause = recorded[0]
                assert src == stages[slot]
                assert cause is {OP_GERMINATE: Cause.GERMINATE, OP_ADVANCE: Cause.ADVANCE, OP_CULL: Cause.CULL}[op]
            else:
                assert all(c is Cause.AUTO for _, _, c in recorded)
            assert result.terminated == (t == budget - 1) and not result.truncated
            obs = result.observation
        with pytest.raises(RuntimeError):
            env.step(np.zeros(3, dtype=np.int64))
    if name == "host-sim":
        assert ops_seen == set(range(NUM_OPS))


@pytest.mark.parametrize(("name", "budget"), [("host-sim", 30), ("host-train", 6)])
def test_masked_out_actions_raise(name: str, budget: int) -> None:
    env = _make(name, budget)
    obs = env.reset(seed=3)
    for index in np.flatnonzero(~obs.action_mask)[:10]:
        action = np.array(np.unravel_index(index, env.schema.head_sizes))
        with pytest.raises(ValueError, match="masked out"):
            env.step(action)
    with pytest.raises(ValueError):
        env.step(np.array([OP_ADVANCE, 0, 0]))  # nothing planted yet


@pytest.mark.parametrize(("name", "budget"), [("host-sim", 30), ("host-train", 8)])
def test_same_seed_gives_identical_trajectories(name: str, budget: int) -> None:
    def rollout(env_seed: int, task_seed: int | None) -> tuple[list, list[float]]:
        env = _make(name, budget, seed=env_seed)
        ctrl = RandomController(seed=7)
        obs = env.reset(seed=task_seed)
        graphs, rewards = [obs], []
        done = False
        while not done:
            result = env.step(ctrl.act(obs, env.info()))
            obs, done = result.observation, result.terminated
            graphs.append(obs)
            rewards.append(result.reward)
        return graphs, rewards

    for env_seed, task_seed in [(0, 11), (5, None)]:
        g1, r1 = rollout(env_seed, task_seed)
        g2, r2 = rollout(env_seed, task_seed)
        assert r1 == r2
        for a, b in zip(g1, g2, strict=True):
            assert a.graph.equals(b.graph)
            np.testing.assert_array_equal(a.action_mask, b.action_mask)
    _, other = rollout(1, None)
    assert other != rollout(0, None)[1]  # a different env seed walks a different task stream


@pytest.mark.parametrize(("name", "episodes", "budget"), [("host-sim", 20, 30), ("host-train", 1, 12)])
def test_rewards_sum_to_accuracy_gain_minus_rent(name: str, episodes: int, budget: int) -> None:
    env = _make(name, budget)
    ctrl = RandomController(seed=2)
    for ep in range(episodes):
        obs = env.reset(seed=ep)
        initial = env.info()["val_acc"]
        total, rents, done = 0.0, 0.0, False
        while not done:
            result = env.step(ctrl.act(obs, env.info()))
            obs, done = result.observation, result.terminated
            total += result.reward
            rents += result.info["rent"]
            assert result.info["rent"] >= 0.0
        info = env.info()
        assert info["rent_total"] == pytest.approx(rents, abs=1e-12)
        assert total == pytest.approx(info["val_acc"] - initial - info["rent_total"], abs=1e-9)


def test_rent_is_charged_on_held_seed_parameters() -> None:
    env = _make("host-sim", 30)
    env.reset(seed=0)
    assert env.step(np.array([OP_WAIT, 0, 0])).info["rent"] == 0.0
    env.step(np.array([OP_GERMINATE, 1, 0]))
    result = env.step(np.array([OP_WAIT, 0, 0]))
    info = env.info()
    expected = env.config.rent_rate * info["blueprint_costs"][1][0] / info["base_params"]
    assert result.info["rent"] == pytest.approx(expected)


def test_both_envs_share_one_schema() -> None:
    sim, train = _make("host-sim", 30), _make("host-train", 30)
    assert sim.schema == train.schema == host_schema(3, 3)
    # The learner and serving take the schema from the contract, without building an env.
    assert env_schema("host-sim") == env_schema("host-train") == sim.schema
    assert len(CATALOG) == DEFAULT_NUM_BLUEPRINTS and HostConfig().num_slots == DEFAULT_NUM_SLOTS
    heads = [(h.name, h.size, h.node_type) for h in sim.schema.action_heads]
    assert heads == [("op", 6, None), ("slot", 3, "slot"), ("blueprint", 3, "blueprint")]


def test_state_packet_and_command_views() -> None:
    env = _make("host-sim", 30)
    obs = env.reset(seed=4)
    env.step(np.array([OP_GERMINATE, 2, 0]))
    obs = env.step(np.array([OP_ADVANCE, 2, 0])).observation
    pkt = env.state_packet()
    assert isinstance(pkt, pb.SystemStatePacket)
    assert pkt.current_epoch == 2 and pkt.version == 1
    assert pkt.validation_accuracy == pytest.approx(env.info()["val_acc"], abs=1e-6)
    assert [s.stage for s in pkt.seed_states] == [Stage.DORMANT, Stage.DORMANT, Stage.TRAINING]
    assert pkt.seed_states[2].blueprint_id == "residual_mlp" and pkt.seed_states[2].parameter_count > 0
    assert pkt.host_parameter_count == env.info()["base_params"] + env.info()["added_params"]
    assert graphs_from_proto(pkt.graph).equals(obs.graph)
    np.testing.assert_array_equal(unpack_mask(pkt.action_mask, obs.action_mask.size), obs.action_mask)
    pb.SystemStatePacket.FromString(pkt.SerializeToString())  # round-trips on the wire
    validate_payload(pkt)  # what the serving consumer will check

    germ = env.command_for(np.array([OP_GERMINATE, 1, 2]))
    assert germ.WhichOneof("command") == "seed_operation"
    assert germ.seed_operation.op == pb.SEED_OP_GERMINATE
    assert (germ.seed_operation.slot_index, germ.seed_operation.blueprint_id) == (1, "low_rank_adapter")
    assert env.command_for(np.array([OP_CULL, 2, 0])).seed_operation.op == pb.SEED_OP_CULL
    assert env.command_for(np.array([OP_WAIT, 0, 0])).seed_operation.op == pb.SEED_OP_WAIT
    up = env.command_for(np.array([OP_LR_UP, 0, 0]))
    assert up.WhichOneof("command") == "optimizer_adjustment" and up.optimizer_adjustment.lr_multiplier == 2.0
    assert env.command_for(np.array([OP_LR_DOWN, 0, 0])).optimizer_adjustment.lr_multiplier == 0.5
    assert germ.epoch == 2 and germ.training_run_id == env.run_id
    for cmd in (germ, up):
        validate_payload(cmd)


def test_lifecycle_runs_its_course_in_the_env() -> None:
    """Germinate → train → blend (alpha ramp) → probation → fossil; and cull → embargo → dormant."""
    env = _make("host-sim", 30)
    env.reset(seed=9)
    env.step(np.array([OP_GERMINATE, 0, 0]))
    env.step(np.array([OP_ADVANCE, 0, 0]))
    env.step(np.array([OP_ADVANCE, 0, 0]))
    alphas = [env.slots[0].alpha]
    while not env.is_allowed(OP_ADVANCE, 0, 0):
        env.step(np.array([OP_WAIT, 0, 0]))
        alphas.append(env.slots[0].alpha)
    assert alphas == pytest.approx([1 / 3, 2 / 3, 1.0])
    env.step(np.array([OP_ADVANCE, 0, 0]))
    assert env.slots[0].stage == Stage.PROBATIONARY
    env.step(np.array([OP_ADVANCE, 0, 0]))
    assert env.slots[0].stage == Stage.FOSSILIZED and not env.is_allowed(OP_CULL, 0, 0)

    env.step(np.array([OP_GERMINATE, 1, 2]))
    env.step(np.array([OP_CULL, 1, 0]))
    seen = [env.slots[1].stage]
    while env.slots[1].stage != Stage.DORMANT:
        assert not env.is_allowed(OP_GERMINATE, 1, 0)  # embargoed slots cannot be replanted
        env.step(np.array([OP_WAIT, 0, 0]))
        seen.append(env.slots[1].stage)
    assert seen == [
        Stage.CULLED,
        *[Stage.EMBARGOED] * env.config.embargo_epochs,
        Stage.RESETTING,
        Stage.DORMANT,
    ]
    assert env.is_allowed(OP_GERMINATE, 1, 0)


def test_make_env_factory() -> None:
    assert make_env("host-sim", seed=1).name == "host-sim"  # type: ignore[attr-defined]  # a HostEnv, typed as Env
    assert make_env("host-train", seed=1, epoch_budget=5).config.epoch_budget == 5  # type: ignore[attr-defined]  # a HostEnv
    gym_env = make_env("gym:CartPole-v1", seed=0)
    assert gym_env.schema.name == "gym:CartPole-v1"
    with pytest.raises(ValueError, match="unknown env"):
        make_env("host-dream", seed=0)
    with pytest.raises(TypeError, match="unknown host env options"):
        make_env("host-sim", seed=0, rent=1.0)
