import math

import numpy as np
import pytest
import torch

from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_unroll
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.learner.schedules import linear_warmup_decay
from tamiyo.learner.unroll_batch import batch_unrolls
from tamiyo.policy.batching import collate
from tamiyo.policy.distribution import MaskedFactoredCategorical
from tamiyo.policy.model import ModelConfig, TamiyoGNN

SCHEMA = host_schema(3, 3)
SMALL = ModelConfig(hidden=16)


def unrolls(n=4, t=8, seed=0, version=0):
    rng = np.random.default_rng(seed)
    return [random_unroll(SCHEMA, t, rng, policy_version=version) for _ in range(n)]


def on_policy(model, batch_of_unrolls):
    """Overwrite behaviour log-probs with the model's own, as an on-policy actor would record."""
    for u in batch_of_unrolls:
        with torch.no_grad():
            out = model(collate(u.graphs.select(np.arange(u.length))))
            dist = MaskedFactoredCategorical(out.logits, torch.from_numpy(u.action_masks))
            u.behaviour_log_probs = dist.log_prob(torch.from_numpy(u.actions)).numpy().astype(np.float32)
    return batch_of_unrolls


class CountingAdam(torch.optim.Adam):
    steps = 0

    def step(self, closure=None):
        CountingAdam.steps += 1
        return super().step(closure)


def test_ppo_update_runs_all_epochs_and_reports_metrics():
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, SMALL)
    cfg = PPOConfig(minibatch_size=8, update_epochs=3, target_kl=None)
    learner = PPOLearner(model, cfg)
    metrics = learner.update(on_policy(model, unrolls()))
    assert metrics["optimizer_steps"] == 3 * 4 and metrics["epochs_completed"] == 3
    assert metrics["early_stopped"] == 0.0 and learner.version == 1
    for key in (
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "learning_rate",
    ):
        assert math.isfinite(metrics[key]), key


def test_kl_early_stop_ends_the_whole_update():
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, SMALL)
    data = on_policy(model, unrolls(n=8))
    # A huge learning rate moves the policy far in one step; the next minibatch sees KL > target.
    cfg = PPOConfig(minibatch_size=8, update_epochs=4, target_kl=1e-4, learning_rate=0.5, lr_schedule="constant")
    learner = PPOLearner(model, cfg)
    learner.optimizer = CountingAdam(model.parameters(), lr=0.5)
    CountingAdam.steps = 0
    metrics = learner.update(data)
    minibatches_per_epoch = 8 * 8 // 8
    assert metrics["early_stopped"] == 1.0
    assert metrics["epochs_completed"] == 0.0  # not even the first epoch finished
    assert CountingAdam.steps == metrics["optimizer_steps"] < minibatches_per_epoch
    # Without the target the same update runs every epoch.
    CountingAdam.steps = 0
    learner.cfg = PPOConfig(minibatch_size=8, update_epochs=4, target_kl=None, lr_schedule="constant")
    metrics = learner.update(data)
    assert CountingAdam.steps == 4 * minibatches_per_epoch and metrics["early_stopped"] == 0.0


def test_ppo_lr_schedule_warms_up_and_decays():
    assert linear_warmup_decay(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert linear_warmup_decay(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert linear_warmup_decay(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert linear_warmup_decay(55, 100, 10, 0.1) == pytest.approx(0.55)
    assert linear_warmup_decay(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert linear_warmup_decay(500, 100, 10, 0.1) == pytest.approx(0.1)
    # PPO's clock is frames learned from (version x frames per update), whatever the batch shape.
    learner = PPOLearner(TamiyoGNN(SCHEMA, SMALL), PPOConfig(total_env_steps=100 * 320))
    assert learner.current_lr(320) == pytest.approx(3e-4 / 10)  # update 0 of a 10-update warm-up
    learner.version = 10
    assert learner.current_lr(320) == pytest.approx(3e-4)
    learner.version = 55
    assert learner.current_lr(320) == pytest.approx(3e-4 * 0.55)
    learner.version = 100
    assert learner.current_lr(320) == pytest.approx(3e-5) == learner.current_lr(640)  # flat after the horizon


def test_ppo_defaults_are_the_seed_config():
    c = PPOConfig()
    assert (c.clip_coef, c.target_kl, c.vf_coef, c.ent_coef, c.max_grad_norm) == (0.2, 0.01, 0.5, 0.01, 0.5)
    assert (c.update_epochs, c.minibatch_size, c.learning_rate, c.gamma, c.gae_lambda) == (
        4,
        32,
        3e-4,
        0.99,
        0.95,
    )
    assert c.adam_eps == 1e-5
    i = ImpalaConfig()
    assert (i.clip_rho_threshold, i.clip_c_threshold, i.baseline_cost, i.entropy_cost) == (
        1.0,
        1.0,
        0.5,
        0.001,
    )
    assert (i.learning_rate, i.rmsprop_eps, i.rmsprop_decay, i.max_grad_norm) == (1e-4, 0.1, 0.99, 40.0)
    assert (i.batch_size, i.unroll_length, i.gamma) == (128, 20, 0.99)


def test_impala_lr_is_constant_by_default_and_decays_linearly_with_frames_learned():
    torch.manual_seed(0)
    constant = ImpalaLearner(TamiyoGNN(SCHEMA, SMALL), ImpalaConfig())
    data = on_policy(constant.model, unrolls(n=4, t=8))  # 32 frames per step
    for _ in range(3):
        assert constant.step(data).metrics["learning_rate"] == pytest.approx(1e-4)

    config = ImpalaConfig(learning_rate=1e-3, lr_schedule="linear_decay", final_lr_ratio=0.0, total_env_steps=128)
    learner = ImpalaLearner(TamiyoGNN(SCHEMA, SMALL), config)
    seen = [learner.step(data).metrics["learning_rate"] for _ in range(6)]
    assert seen == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0, 0.0])  # 0, 32, 64, 96, 128+ frames
    resumed = ImpalaLearner(TamiyoGNN(SCHEMA, SMALL), config)
    resumed.version = 2  # a restored checkpoint carries the version: the schedule continues, not restarts
    assert resumed.step(data).metrics["learning_rate"] == pytest.approx(0.5e-3)


def test_impala_step_metrics_priorities_and_lag():
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, SMALL)
    learner = ImpalaLearner(model, ImpalaConfig())
    learner.version = 5
    data = on_policy(model, unrolls(n=6, version=2))
    result = learner.step(data)
    m = result.metrics
    assert m["skipped"] == 0.0 and learner.version == 6
    assert m["policy_lag_mean"] == 3.0 and m["policy_lag_max"] == 3.0
    assert m["rho_mean"] == pytest.approx(1.0, abs=1e-4) and m["rho_clip_fraction"] == 0.0
    assert result.priorities.shape == (6,) and (result.priorities > 0).all()
    assert np.isfinite(result.priorities).all()


def test_impala_importance_weights_scale_the_update():
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = ImpalaLearner(model, ImpalaConfig())
    learner.step(unrolls(n=4), importance_weights=np.zeros(4))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # zero weight: no change
    learner.step(unrolls(n=4), importance_weights=np.zeros((8, 4)))  # per-step weights [T, B]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    learner.step(unrolls(n=4), importance_weights=np.ones(4))
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_impala_priorities_are_mean_abs_vtrace_td():
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, SMALL)
    cfg = ImpalaConfig(learning_rate=0.0)
    data = unrolls(n=3, seed=4)
    result = ImpalaLearner(model, cfg).step(data)
    # Recompute the V-trace targets by hand from the same (unchanged, lr=0) network.
    from tamiyo.learner.vtrace import vtrace

    batch = batch_unrolls(data)
    with torch.no_grad():
        out = model(collate(batch.graphs))
    values, boot, finals = batch.split_values(out.value)
    n = batch.num_steps
    dist = MaskedFactoredCategorical([lg[:n] for lg in out.logits], batch.masks.reshape(n, -1))
    target = dist.log_prob(batch.actions.reshape(n, -1)).view(batch.t, batch.b)
    rewards, discounts = batch.targets_inputs(finals, cfg.gamma)
    vt = vtrace(batch.behaviour_log_probs, target, rewards, discounts, values, boot)
    expected = (vt.vs - values).abs().mean(0).numpy() + cfg.priority_eps
    np.testing.assert_allclose(result.priorities, expected, rtol=1e-5)


@pytest.mark.parametrize("separate_critic", [False, True])
def test_impala_critic_warmup_steps_only_the_value_then_everything(separate_critic):
    """During the warm-up (frames learned, as the LR schedule counts them) the policy's parameters stay
    exactly as they were and the value's move, on the value loss alone; after it every parameter learns."""
    torch.manual_seed(0)
    model = TamiyoGNN(SCHEMA, ModelConfig(hidden=16, separate_critic=separate_critic))
    learner = ImpalaLearner(model, ImpalaConfig(learning_rate=1e-2, critic_warmup_frames=64))
    value = {n for n, _ in model.named_parameters() if n.startswith(("value_trunk.", "value_torso."))}
    data = on_policy(model, unrolls(n=4, t=8))  # 32 frames per step: steps 1 and 2 warm up
    for step in range(3):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        m = learner.step(data).metrics
        moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
        assert m["skipped"] == 0.0 and m["critic_warmup"] == float(step < 2)
        if step < 2:
            assert moved <= value and {n for n in value if n.startswith("value_trunk.")} <= moved
            assert m["loss"] == pytest.approx(m["baseline_loss"] * 32, rel=1e-5)  # the value loss alone
        else:
            assert any(n.startswith("heads.") for n in moved) and any(n.startswith("torso.") for n in moved)
