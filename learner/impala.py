"""IMPALA learner step (Espeholt et al. 2018): V-trace targets, policy gradient,
baseline and entropy losses, RMSprop.

Losses are *summed* over the [T, B] batch as in the paper and TorchBeast; the
RMSprop epsilon of 0.1 is tuned for gradients of that scale.  Optional
per-unroll importance weights (from prioritized replay) scale every term, and
the step returns new per-unroll priorities: the mean |vs - V| (V-trace TD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.circuit_breaker import CircuitBreaker, guarded_step
from tamiyo.learner.schedules import linear_warmup_decay, set_lr
from tamiyo.learner.unroll_batch import batch_unrolls
from tamiyo.learner.vtrace import vtrace
from tamiyo.policy.batching import collate
from tamiyo.policy.distribution import MaskedFactoredCategorical
from tamiyo.policy.model import TamiyoGNN


@dataclass
class ImpalaConfig:
    """Defaults are the seed's IMPALA_TRAINING_CONFIG."""

    clip_rho_threshold: float = 1.0
    clip_c_threshold: float = 1.0
    clip_pg_rho_threshold: float = 1.0
    baseline_cost: float = 0.5
    entropy_cost: float = 0.001
    learning_rate: float = 1e-4
    rmsprop_eps: float = 0.1
    rmsprop_decay: float = 0.99
    max_grad_norm: float = 40.0
    gamma: float = 0.99
    batch_size: int = 128  # unrolls per learner step
    unroll_length: int = 20
    priority_eps: float = 1e-6
    # Learning rate against env frames learned from: "constant" (the seed's), or "linear_decay" to
    # final_lr_ratio x lr at total_env_steps (the IMPALA paper and TorchBeast anneal to 0).
    lr_schedule: str = "constant"
    final_lr_ratio: float = 0.0
    total_env_steps: int = 1_000_000
    # Frames learned from (counted as the LR schedule counts them) during which only the value head steps,
    # on the value loss alone: a policy fine-tuned in another env (sim-to-real) first fits its value to the
    # new env's returns, so that its first policy steps follow the new env's advantages, not the old env's
    # values.  0: off.
    critic_warmup_frames: int = 0
    # V-trace's lambda (c_t = lambda * min(c_bar, rho_t), the paper's section 4.2): below 1 the targets lean
    # on the value function, trading bias for variance.  1: the paper's default.
    vtrace_lambda: float = 1.0


@dataclass
class ImpalaStepResult:
    metrics: dict[str, float]
    priorities: np.ndarray  # float64 [B], one per unroll (empty when the step was refused)


class ImpalaLearner:
    def __init__(
        self,
        model: TamiyoGNN,
        config: ImpalaConfig | None = None,
        device: torch.device | str = "cpu",
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.model = model.to(device)
        self.cfg = config or ImpalaConfig()
        self.device = torch.device(device)
        self.breaker = breaker or CircuitBreaker()
        self.optimizer = torch.optim.RMSprop(
            model.parameters(),
            lr=self.cfg.learning_rate,
            alpha=self.cfg.rmsprop_decay,
            eps=self.cfg.rmsprop_eps,
            foreach=True,  # one fused update over all ~60 small tensors (torch picks it only on CUDA by default)
        )
        self.version = 0  # successful learner steps = policy version
        self.head_names = [h.name for h in model.schema.action_heads]
        value = {id(p) for m in (model.value_trunk, model.value_torso) if m is not None for p in m.parameters()}
        self._policy_params = [p for p in model.parameters() if id(p) not in value]  # frozen in the critic warm-up

    def current_lr(self, frames_per_step: int) -> float:
        """The LR for the next step.  The schedule's clock is frames learned from, version x frames per
        step (every step of a run sees the same batch shape), so a resumed learner continues it exactly."""
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        frac = linear_warmup_decay(self.version * frames_per_step, cfg.total_env_steps, 0, cfg.final_lr_ratio)
        return cfg.learning_rate * frac

    def step(self, unrolls: Sequence[Unroll], importance_weights: np.ndarray | None = None) -> ImpalaStepResult:
        cfg, model, dev = self.cfg, self.model, self.device
        if not self.breaker.allow():
            return ImpalaStepResult({"skipped": 1.0, "breaker_open": 1.0}, np.zeros(0))
        batch = batch_unrolls(unrolls, dev)
        t, b, n = batch.t, batch.b, batch.num_steps
        set_lr(self.optimizer, self.current_lr(n))

        # One forward pass over observations, bootstrap and final observations.
        out = model(collate(batch.graphs, dev))
        values, bootstrap, finals = batch.split_values(out.value)
        dist = MaskedFactoredCategorical([lg[:n] for lg in out.logits], batch.masks.reshape(n, -1), self.head_names)
        target_logp, entropy = dist.evaluate(batch.actions.reshape(n, -1))
        target_logp, entropy = target_logp.view(t, b), entropy.view(t, b)

        rewards, discounts = batch.targets_inputs(finals.detach(), cfg.gamma)
        vt = vtrace(
            batch.behaviour_log_probs,
            target_logp.detach(),
            rewards,
            discounts,
            values.detach(),
            bootstrap.detach(),
            cfg.clip_rho_threshold,
            cfg.clip_c_threshold,
            cfg.clip_pg_rho_threshold,
            cfg.vtrace_lambda,
        )

        # Replay importance weights: one per unroll [B] (broadcast over time) or per step [T, B].
        w = torch.ones(1, b, device=dev)
        if importance_weights is not None:
            w = torch.as_tensor(importance_weights, dtype=torch.float32, device=dev)
            w = w.view(t, b) if w.numel() == t * b and w.dim() == 2 else w.view(1, b)
        pg_loss = -(vt.pg_advantages * target_logp * w).sum()
        baseline_loss = cfg.baseline_cost * 0.5 * (((vt.vs - values) ** 2) * w).sum()
        entropy_loss = -cfg.entropy_cost * (entropy * w).sum()
        warmup = self.version * n < cfg.critic_warmup_frames
        loss = baseline_loss if warmup else pg_loss + baseline_loss + entropy_loss

        stepped, grad_norm = guarded_step(loss, model.parameters(), self.optimizer, self.breaker, cfg.max_grad_norm,
                                          frozen=self._policy_params if warmup else ())  # fmt: skip
        if stepped:
            self.version += 1

        with torch.no_grad():
            td = (vt.vs - values.detach()).abs()
            # A refused step has no trustworthy TD errors (they are what overflowed): no new priorities.
            priorities = td.mean(0).cpu().numpy().astype(np.float64) + cfg.priority_eps if stepped else np.zeros(0)
            rhos = vt.log_rhos.exp()
            lag = (self.version - int(stepped) - batch.policy_versions).float()
            metrics = {
                "loss": float(loss.detach()),
                "policy_loss": float(pg_loss.detach()) / n,
                "baseline_loss": float(baseline_loss.detach()) / n,
                "entropy_loss": float(entropy_loss.detach()) / n,
                "entropy": float(entropy.detach().mean()),
                "grad_norm": grad_norm,
                "rho_mean": float(rhos.mean()),
                "clipped_rho_mean": float(vt.clipped_rhos.mean()),
                "c_mean": float(vt.cs.mean()),
                "rho_clip_fraction": _clip_fraction(rhos, cfg.clip_rho_threshold),
                "c_clip_fraction": _clip_fraction(rhos, cfg.clip_c_threshold),
                "pg_rho_clip_fraction": _clip_fraction(rhos, cfg.clip_pg_rho_threshold),
                "policy_lag_mean": float(lag.mean()),
                "policy_lag_max": float(lag.max()),
                "vs_mean": float(vt.vs.mean()),
                "td_abs_mean": float(td.mean()),
                "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
                "skipped": float(not stepped),
                "critic_warmup": float(warmup),
                "breaker_open": 0.0,
                "policy_version": float(self.version),
            }
        return ImpalaStepResult(metrics, priorities)


def _clip_fraction(rhos: torch.Tensor, threshold: float | None) -> float:
    return 0.0 if threshold is None else float((rhos > threshold).float().mean())
