"""`BatchedHosts` / `VecHostTrain` against `TorchHost`, the straightforward host-train backend.

Training is compared where it is well defined.  From the same parameters one epoch is one map, and
with LR 0 the parameters stay put in both, so every minibatch of the epoch compares the forward pass,
the losses (task and isolated), the backward pass, the clipping and every statistic of the probe, with
seeds of every blueprint at every slot, blended, learning or frozen, and hosts that sit out minibatches.
Adam is compared with torch.optim.Adam on the same gradients.  Whole trajectories are not compared
number for number: Adam's first steps move each weight by ~±lr whatever the gradient's size, so a
weight whose gradient is ~1e-9 goes either way on a last-bit difference between two matmul kernels,
and training amplifies that (measured: 1e-7 → 1e-3 relative within one epoch on some digits tasks).
What must be exact is exact: tasks, initial weights, seeds' initial weights, data, masks, lifecycle.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from tamiyo.contracts.env_schemas import env_schema
from tamiyo.producers import host_train
from tamiyo.producers.batched_hosts import BatchedHosts
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.envs import make_env, make_vec_env
from tamiyo.producers.evaluate import evaluate
from tamiyo.producers.host_env import EpochStats, HostConfig
from tamiyo.producers.host_train import TorchHost, make_host_train
from tamiyo.producers.vec_env import SyncVecEnv
from tamiyo.producers.vec_host_train import HostSlot, VecHostTrain

from .test_vec_host_sim import choose_actions


def _hosts(task_seeds: list[int]) -> tuple[list[TorchHost], BatchedHosts, list[EpochStats]]:
    """TorchHosts and one BatchedHosts on the same tasks, and the TorchHosts' untrained stats."""
    torch_hosts = [TorchHost(3, 8) for _ in task_seeds]
    batched = BatchedHosts(len(task_seeds), 3, 8)
    initial = []
    for i, seed in enumerate(task_seeds):
        initial.append(torch_hosts[i].new_task(np.random.default_rng(seed))[1])
        batched.load_task(i, np.random.default_rng(seed))
    return torch_hosts, batched, initial


def _host_weights(batched: BatchedHosts, i: int, th: TorchHost) -> list[torch.Tensor]:
    lay = batched.layout
    out = []
    for j, layer in enumerate(th.model.linears):
        o, n = layer.weight.shape
        out += [lay.view(batched.params, lay.weights[j])[i, :o, :n], lay.view(batched.params, lay.biases[j])[i, :o]]
    return out


def _plant_trained_looking_seed(th: TorchHost, batched: BatchedHosts, i: int, slot: int, bp_index: int,
                                gen: torch.Generator) -> None:  # fmt: skip
    """Plant blueprint ``bp_index`` at ``slot`` in both, then give it the same random weights (a fresh
    seed's last projection is zero, so at LR 0 it would add nothing and hide the seed paths)."""
    bp = CATALOG[bp_index]
    th.plant(slot, bp)
    batched.plant(i, slot, bp)
    seed, lay = th.model.seeds[slot], batched.layout
    assert seed is not None
    with torch.no_grad():
        for p in seed.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        up, down = (seed.up, seed.down) if bp.nonlinear else (seed.a, seed.b)
        h, n = up.weight.shape
        lay.view(batched.params, lay.up[slot])[i, :h, :n] = up.weight
        lay.view(batched.params, lay.down[slot])[i, :, :h] = down.weight
        if bp.nonlinear:
            lay.view(batched.params, lay.up_b[slot])[i, :h] = up.bias
            lay.view(batched.params, lay.down_b[slot])[i] = down.bias


def _assert_stats_close(got, want, rtol: float = 2e-4, atol: float = 2e-6) -> None:
    for name, value in asdict(want).items():
        np.testing.assert_allclose(
            np.asarray(getattr(got, name)), np.asarray(value), rtol=rtol, atol=atol, err_msg=name
        )


def test_tasks_weights_and_data_are_torch_hosts_exactly() -> None:
    torch_hosts, batched, _ = _hosts([0, 11, 4])  # synthetic and digits tasks (64 features, up to 10 classes)
    assert {th.task.name.split("-")[0] for th in torch_hosts} == {"synthetic", "digits"}
    for i, th in enumerate(torch_hosts):
        want = [p.detach() for layer in th.model.linears for p in (layer.weight, layer.bias)]
        for a, b in zip(_host_weights(batched, i, th), want, strict=True):
            assert torch.equal(a, b)
        n, d = th.xt.shape
        assert torch.equal(batched.x_train[i, :n, :d], th.xt) and not batched.x_train[i, n:].any()
        assert not batched.x_train[i, :, d:].any()
        assert torch.equal(batched.y_val[i, : len(th.yv)], th.yv)
    th, i = torch_hosts[1], 1
    for slot, bp in ((0, CATALOG[1]), (2, CATALOG[2])):
        th.plant(slot, bp)
        batched.plant(i, slot, bp)
    lay = batched.layout
    wide, low = th.model.seeds[0], th.model.seeds[2]
    assert torch.equal(lay.view(batched.params, lay.up[0])[i, :32, : th.xt.shape[1]], wide.up.weight.detach())
    assert torch.equal(lay.view(batched.params, lay.down[2])[i, :, :4], low.b.weight.detach())
    real = [int(batched.real[i, a:b].sum()) for a, b in lay.bounds[1:]]
    assert real == [CATALOG[1].param_count(th.xt.shape[1], 8), 0, CATALOG[2].param_count(8, 8)]


@pytest.mark.parametrize("clip", [5.0, 0.05])  # 0.05: every host's and seed's gradient is clipped
def test_one_epoch_at_lr_zero_matches_torch_host_in_every_statistic(clip: float, monkeypatch) -> None:
    monkeypatch.setattr(host_train, "MAX_GRAD_NORM", clip)
    task_seeds = [0, 11, 4, 2, 5, 9]
    torch_hosts, batched, initial = _hosts(task_seeds)
    batched.max_grad_norm = clip
    for want, got in zip(initial, batched.initial_stats(list(range(6))), strict=True):
        _assert_stats_close(got, want)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    lay = batched.layout
    for i, th in enumerate(torch_hosts):  # trained-looking biases: padding must stay out of every statistic
        for j, layer in enumerate(th.model.linears):
            with torch.no_grad():
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.5)
                lay.view(batched.params, lay.biases[j])[i, : layer.bias.shape[0]] = layer.bias
    for i, th in enumerate(torch_hosts):  # a seed of some blueprint at some slots of every host
        for slot in range(3):
            if rng.random() < 0.7:
                _plant_trained_looking_seed(th, batched, i, slot, int(rng.integers(len(CATALOG))), gen)
    for _ in range(3):  # frozen, learning (isolated), blending (both paths), full weight
        alphas = np.where(batched.present.numpy(), rng.choice([0.0, 1 / 3, 2 / 3, 1.0], size=(6, 3)), 0.0)
        trains = rng.random((6, 3)) < 0.6
        got = batched.train_epoch(np.zeros(6), alphas, trains)
        for i, th in enumerate(torch_hosts):
            want = th.train_epoch(0.0, alphas[i].tolist(), trains[i].tolist())
            _assert_stats_close(got[i], want)
            for a, b in zip(_host_weights(batched, i, th), [p for ly in th.model.linears for p in (ly.weight, ly.bias)],
                            strict=True):  # fmt: skip
                assert torch.equal(a, b.detach())  # LR 0 moves nothing, in both
    assert any(s.seed_blend_gain.any() for s in got) and any(s.seed_grad_rms.any() for s in got)


def test_every_mix_of_blending_and_learning_at_a_slot_matches_torch_host() -> None:
    """Per slot, hosts that only blend, only learn (isolated), do both, or neither, in an order where the
    learning hosts are not the first of the pass: slot 0's shared seed pass must hand each path its own rows,
    and the isolated rows of all slots, one stream, must stay with their hosts."""
    task_seeds = [0, 11, 4, 2, 5, 9]
    torch_hosts, batched, _ = _hosts(task_seeds)
    gen = torch.Generator().manual_seed(3)
    for i, th in enumerate(torch_hosts):
        for slot in range(3):
            _plant_trained_looking_seed(th, batched, i, slot, (i + slot) % len(CATALOG), gen)
    # host: blend only, frozen, learn only, both, learn only, blend only -- rotated per slot
    mix = [(1.0, False), (0.0, False), (0.0, True), (1 / 3, True), (0.0, True), (2 / 3, False)]
    alphas = np.array([[mix[(i + slot) % 6][0] for slot in range(3)] for i in range(6)])
    trains = np.array([[mix[(i + slot) % 6][1] for slot in range(3)] for i in range(6)])
    got = batched.train_epoch(np.zeros(6), alphas, trains)
    for i, th in enumerate(torch_hosts):
        _assert_stats_close(got[i], th.train_epoch(0.0, alphas[i].tolist(), trains[i].tolist()))
    assert np.array_equal(np.array([s.seed_grad_rms for s in got]) != 0, trains)  # exactly the learning seeds move


def test_adam_matches_torch_optim_adam_per_host_and_segment() -> None:
    _, batched, _ = _hosts([0, 11, 4])
    batched.plant(0, 0, CATALOG[0])
    batched.plant(2, 1, CATALOG[2])
    lay, gen = batched.layout, torch.Generator().manual_seed(1)
    start = batched.params.clone()
    refs = {
        (i, seg): torch.nn.Parameter(start[i, a:b].clone()) for i in range(3) for seg, (a, b) in enumerate(lay.bounds)
    }
    opts = {key: torch.optim.Adam([p], lr=0.01) for key, p in refs.items()}
    lrs = torch.tensor([0.01, 0.02, 0.005])
    for step in range(6):
        for seg, (a, b) in enumerate(lay.bounds):
            on = torch.tensor([True, step % 2 == 0, step != 3])  # hosts sit out some steps
            grad = torch.randn(3, b - a, generator=gen) * 10.0 ** -torch.randint(0, 6, (3, 1), generator=gen)
            batched._adam(seg, grad.clone(), lrs, on)
            for i in np.flatnonzero(on.numpy()):
                opt = opts[(i, seg)]
                opt.param_groups[0]["lr"] = float(lrs[i])
                refs[(i, seg)].grad = grad[i].clone()
                opt.step()
    for (i, seg), p in refs.items():
        a, b = lay.bounds[seg]
        torch.testing.assert_close(batched.params[i, a:b], p.detach(), rtol=1e-5, atol=1e-6)  # 1e-4 of a step
        assert batched.steps[i, seg] == opts[(i, seg)].state[p]["step"]


def test_first_epoch_with_lr_matches_torch_host() -> None:
    """One real training epoch from the same start (no seeds yet): equal to float rounding."""
    torch_hosts, batched, _ = _hosts([0, 11, 4])
    got = batched.train_epoch(np.full(3, 0.01), np.zeros((3, 3)), np.zeros((3, 3), dtype=bool))
    for i, th in enumerate(torch_hosts):
        _assert_stats_close(got[i], th.train_epoch(0.01, [0.0] * 3, [False] * 3), rtol=1e-3, atol=1e-5)


def test_vec_env_draws_the_scalar_envs_tasks_masks_and_lifecycle() -> None:
    """Stepped side by side with N `make_host_train` envs and the same actions: the same tasks (run ids),
    first observations to rounding, and the same masks, episode ends and final graphs at every step
    (masks follow the lifecycle and the budget, which training does not move)."""
    cfg = HostConfig(epoch_budget=4)
    seeds = [0, 1, 2, 3]
    ref = SyncVecEnv([make_host_train(seed=s, config=cfg) for s in seeds])
    vec = VecHostTrain(len(seeds), seeds, cfg)
    want, got = ref.reset(), vec.reset()
    for name, x in want.graphs.node_features.items():
        np.testing.assert_allclose(got.graphs.node_features[name], x, rtol=1e-4, atol=1e-5, err_msg=name)
    rng = np.random.default_rng(0)
    for step in range(2 * cfg.epoch_budget):
        assert np.array_equal(got.action_masks, want.action_masks)
        assert [e.run_id for e in vec.envs] == [e.run_id for e in ref.envs]  # type: ignore[attr-defined]
        actions = choose_actions(want.action_masks, rng)
        r_want, r_got = ref.step(actions), vec.step(actions)
        assert np.array_equal(r_got.terminated, r_want.terminated) and not r_got.truncated.any()
        assert (r_got.final_graphs is None) == (r_want.final_graphs is None)
        assert r_got.terminated.all() == (step % cfg.epoch_budget == cfg.epoch_budget - 1)
        if step == 0:
            np.testing.assert_allclose(r_got.rewards, r_want.rewards, atol=1e-4)
        want, got = r_want.observation, r_got.observation
    assert np.array_equal(got.action_masks, want.action_masks)


def test_host_slot_is_a_backend_that_trains_only_its_host() -> None:
    batched = BatchedHosts(3, 3, 8)
    slots = [HostSlot(batched, i) for i in range(3)]
    for i, slot in enumerate(slots):
        slot.new_task(np.random.default_rng(i))
    before = batched.params.clone()
    slots[1].plant(0, CATALOG[0])
    stats = slots[1].train_epoch(0.01, [0.0, 0.0, 0.0], [True, False, False])
    changed = (batched.params != before).any(dim=1).tolist()
    assert changed == [False, True, False]
    assert stats.seed_grad_rms[0] > 0 and stats.val_acc > 0
    slots[1].remove(0)
    assert not batched.present[1].any() and not batched.real[1, batched.layout.bounds[1][0] :].any()


def test_a_masked_out_action_is_refused_before_any_env_applies_its_own() -> None:
    vec = VecHostTrain(2, [0, 1], HostConfig(epoch_budget=4))
    obs = vec.reset()
    lr_up, cull = [4, 0, 0], [3, 0, 0]  # CULL with no seed planted is masked out
    assert obs.action_masks.reshape(2, 6, -1)[0, 4].any() and not obs.action_masks.reshape(2, 6, -1)[1, 3].any()
    lrs = [e.lr for e in vec.envs]
    with pytest.raises(ValueError, match="env 1"):
        vec.step(np.array([lr_up, cull]))
    assert [e.lr for e in vec.envs] == lrs  # env 0's LR step was not applied either
    assert vec.step(np.array([lr_up, [0, 0, 0]])).rewards.shape == (2,)
    assert vec.envs[0].lr == 2 * lrs[0]


def test_paired_rewards_are_the_gain_over_a_none_twin_on_the_same_task() -> None:
    """``host-train:paired``: the twin trains the env's task from the same weights and minibatch orders with no
    seeds at the initial LR.  Under `none` (WAIT everywhere) env and twin are the same computation, so every
    reward is exactly 0; under other actions the env sees what the unpaired env sees, its reward is the unpaired
    one minus the twin's accuracy change, and that change is what the unpaired env gets under `none`."""
    cfg, seeds = HostConfig(epoch_budget=4), [0, 1, 2]
    n = len(seeds)
    paired = make_vec_env("host-train:paired", seeds, epoch_budget=4)
    assert isinstance(paired, VecHostTrain) and paired.paired_baseline and paired.hosts.num_hosts == 2 * n
    none = VecHostTrain(n, seeds, cfg)
    paired.reset(), none.reset()
    wait = np.zeros((n, 3), dtype=np.int64)
    for _ in range(cfg.epoch_budget + 1):  # into the next episode: the twins restart with their envs
        got, want = paired.step(wait), none.step(wait)
        assert np.array_equal(got.rewards, np.zeros(n))
        assert [i["none_acc_gain"] for i in got.infos] == pytest.approx(want.rewards.tolist(), abs=1e-6)

    paired, plain, none = make_vec_env("host-train:paired", seeds, epoch_budget=4), VecHostTrain(n, seeds, cfg), \
        VecHostTrain(n, seeds, cfg)  # fmt: skip
    got, want = paired.reset(), plain.reset()
    none.reset()
    rng = np.random.default_rng(3)
    returns, baseline = np.zeros(n), np.zeros(n)
    for _ in range(cfg.epoch_budget):
        assert np.array_equal(got.action_masks, want.action_masks)
        for name, x in want.graphs.node_features.items():
            np.testing.assert_allclose(got.graphs.node_features[name], x, rtol=1e-5, atol=1e-6, err_msg=name)
        actions = choose_actions(want.action_masks, rng)
        r_got, r_want, r_none = paired.step(actions), plain.step(actions), none.step(wait)
        gains = np.array([i["none_acc_gain"] for i in r_got.infos])
        np.testing.assert_allclose(r_got.rewards, r_want.rewards - gains, atol=1e-6)
        np.testing.assert_allclose(gains, r_none.rewards, atol=1e-6)
        returns, baseline = returns + r_got.rewards, baseline + r_none.rewards
        got, want = r_got.observation, r_want.observation
    assert r_got.terminated.all()
    # The episode's return telescopes to its own return minus the `none` run's on the same task.
    final = np.array([i["val_acc"] - i["initial_acc"] - i["rent_total"] for i in r_want.infos])
    np.testing.assert_allclose(returns, final - baseline, atol=1e-5)


def test_paired_host_train_is_evaluated_on_host_train_and_is_no_scalar_env() -> None:
    with pytest.raises(ValueError, match="training env of the learned controller"):
        make_env("host-train:paired", seed=0)
    got = evaluate("none", "host-train:paired", 1, 5)
    assert got["per_task"] == evaluate("none", "host-train", 1, 5)["per_task"]
    assert env_schema("host-train:paired") == env_schema("host-train")
