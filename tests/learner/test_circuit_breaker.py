import numpy as np
import torch

from tamiyo.contracts.host_schema import host_schema
from tamiyo.contracts.random_unrolls import random_unroll
from tamiyo.learner.circuit_breaker import BreakerState, CircuitBreaker, guarded_step
from tamiyo.learner.impala import ImpalaConfig, ImpalaLearner
from tamiyo.learner.ppo import PPOConfig, PPOLearner
from tamiyo.policy.model import TamiyoGNN


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_and_nan_gradient_skip_the_step():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    breaker = CircuitBreaker()
    x = torch.randn(8, 3)
    assert guarded_step(net(x).pow(2).mean(), net.parameters(), opt, breaker, 1.0)[0]
    before, opt_before = snapshot(net), {k: v["exp_avg"].clone() for k, v in opt.state.items()}
    stepped, _ = guarded_step(net(x).mean() * float("nan"), net.parameters(), opt, breaker, 1.0)
    assert not stepped and same(before, snapshot(net))
    hook = net.weight.register_hook(lambda g: g * float("nan"))  # finite loss, NaN gradient
    stepped, norm = guarded_step(net(x).pow(2).mean(), net.parameters(), opt, breaker, 1.0)
    hook.remove()
    assert not stepped and not np.isfinite(norm) and same(before, snapshot(net))
    assert all(torch.equal(opt.state[k]["exp_avg"], v) for k, v in opt_before.items())
    assert all(p.grad is None for p in net.parameters())
    assert breaker.total_failures == 2 and breaker.state is BreakerState.CLOSED


def test_breaker_opens_half_opens_and_closes():
    clock = Clock()
    br = CircuitBreaker(failure_threshold=3, window_seconds=10.0, recovery_seconds=5.0, clock=clock)
    br.record_failure()
    clock.now = 11.0  # the first failure leaves the window
    br.record_failure()
    br.record_failure()
    assert br.state is BreakerState.CLOSED and br.allow()
    br.record_failure()
    assert br.state is BreakerState.OPEN and not br.allow()
    clock.now = 15.9
    assert not br.allow()
    clock.now = 16.0
    assert br.allow() and br.state is BreakerState.HALF_OPEN
    br.record_failure()  # the trial failed: open again
    assert br.state is BreakerState.OPEN and not br.allow() and br.times_opened == 2
    clock.now = 21.0
    assert br.allow()
    br.record_success()
    assert br.state is BreakerState.CLOSED and br.allow()


def test_ppo_and_impala_skip_updates_on_injected_nan():
    schema = host_schema(3, 3)
    rng = np.random.default_rng(0)
    unrolls = [random_unroll(schema, 6, rng) for _ in range(4)]
    unrolls[2].rewards[3] = np.nan  # poison one reward
    clock = Clock()
    for make in (
        lambda m, br: PPOLearner(m, PPOConfig(minibatch_size=8, target_kl=None), breaker=br),
        lambda m, br: ImpalaLearner(m, ImpalaConfig(), breaker=br),
    ):
        torch.manual_seed(0)
        model = TamiyoGNN(schema)
        breaker = CircuitBreaker(failure_threshold=2, window_seconds=100, recovery_seconds=10, clock=clock)
        learner = make(model, breaker)
        before = snapshot(model)
        for _ in range(2):
            out = learner.update(unrolls) if isinstance(learner, PPOLearner) else learner.step(unrolls).metrics
            assert out["skipped"] == 1.0
        assert same(before, snapshot(model))
        assert breaker.state is BreakerState.OPEN
        out = learner.update(unrolls) if isinstance(learner, PPOLearner) else learner.step(unrolls).metrics
        assert out["breaker_open"] == 1.0
        clock.now += 10
        unrolls[2].rewards[3] = 0.0  # healthy data again: the half-open trial succeeds
        out = learner.update(unrolls) if isinstance(learner, PPOLearner) else learner.step(unrolls).metrics
        assert out["skipped"] == 0.0 and breaker.state is BreakerState.CLOSED
        assert not same(before, snapshot(model))
        unrolls[2].rewards[3] = np.nan
