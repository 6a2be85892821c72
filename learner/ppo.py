"""PPO (clipped surrogate) on batches of `Unroll`s, CleanRL-style, decoupled for off-policy data.

One call to `PPOLearner.update` is one PPO iteration: values and action log-probs of every graph
under the current (pre-update, "proximal") policy -> GAE (truncations bootstrapped from their final
observation) -> ``update_epochs`` passes of shuffled minibatches.

Over Kafka the behaviour policy that made a batch lags the learner by a few versions.  Plain PPO
would centre its trust region on that stale policy (ratio and KL against the behaviour log-probs):
the KL early stop could then fire before any step.  Decoupled PPO (Hilton, Cobbe & Schulman, "Batch
size-invariance for policy optimization", 2021) clips the ratio new/proximal and measures the KL
against the proximal policy, and corrects for the behaviour policy with the importance weight
proximal/behaviour, truncated at ``behaviour_weight_clip`` (as V-trace truncates ρ) so a stale
sample cannot dominate.  On fresh data (proximal = behaviour) this is exactly PPO.

The KL early stop is checked on every minibatch *before* its optimizer step and ends the whole
update, not just the current epoch.  The learning rate follows frames learned from (version x
frames per update), as IMPALA's does, so the schedule fits whatever batch shape the bus delivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tamiyo.contracts.unroll import Unroll
from tamiyo.learner.circuit_breaker import CircuitBreaker, guarded_step
from tamiyo.learner.gae import gae
from tamiyo.learner.schedules import linear_warmup_decay, set_lr
from tamiyo.learner.unroll_batch import batch_unrolls
from tamiyo.policy.batching import collate
from tamiyo.policy.distribution import MaskedFactoredCategorical
from tamiyo.policy.model import TamiyoGNN


@dataclass
class PPOConfig:
    """Defaults are the seed's PPO_TRAINING_CONFIG."""

    clip_coef: float = 0.2
    target_kl: float | None = 0.01
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    update_epochs: int = 4
    minibatch_size: int = 32
    learning_rate: float = 3e-4
    lr_schedule: str = "linear_decay"  # or "constant"
    final_lr_ratio: float = 0.1
    warmup_updates: int = 10
    total_env_steps: int = 1_000_000  # the LR schedule's horizon, in frames learned from
    rollout_length: int = 2048  # the in-process collector's shape (learner/inprocess.py)
    num_envs: int = 16
    behaviour_weight_clip: float = 1.0  # truncation of the proximal/behaviour importance weight
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    clip_vloss: bool = True
    adam_eps: float = 1e-5


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, weights: torch.Tensor, clip: float
) -> torch.Tensor:
    """Decoupled PPO's policy loss: mean of w · max(-A·r, -A·clip(r, 1-ε, 1+ε)), with r = π/π_prox and
    w the truncated π_prox/π_behaviour weight (w = 1: the clipped surrogate of Schulman et al., 2017)."""
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    return (weights * surrogate).mean()


def value_loss(new: torch.Tensor, old: torch.Tensor, returns: torch.Tensor, clip: float | None) -> torch.Tensor:
    """0.5 · mean squared error to ``returns``; with ``clip``, the pessimistic max with the error of the
    value moved at most ``clip`` from ``old`` (PPO2's value clipping)."""
    if clip is None:
        return 0.5 * ((new - returns) ** 2).mean()
    clipped = old + (new - old).clamp(-clip, clip)
    return 0.5 * torch.max((new - returns) ** 2, (clipped - returns) ** 2).mean()


def k3_kl(logratio: torch.Tensor) -> float:
    """Schulman's k3 estimator of KL(q || p) from samples x ~ q with ``logratio`` = log p(x) - log q(x):
    mean of (r - 1) - log r, unbiased and never negative (CleanRL's approx_kl)."""
    return float(((logratio.exp() - 1) - logratio).mean())


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = float(target.var())
    return float("nan") if var == 0 else 1.0 - float((target - pred).var()) / var


class PPOLearner:
    def __init__(
        self,
        model: TamiyoGNN,
        config: PPOConfig | None = None,
        device: torch.device | str = "cpu",
        breaker: CircuitBreaker | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model.to(device)
        self.cfg = config or PPOConfig()
        self.device = torch.device(device)
        self.breaker = breaker or CircuitBreaker()
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=self.cfg.learning_rate, eps=self.cfg.adam_eps, foreach=True
        )
        self.rng = np.random.default_rng(seed)
        self.version = 0  # completed PPO iterations = policy version
        self.head_names = [h.name for h in model.schema.action_heads]

    def current_lr(self, frames_per_update: int) -> float:
        """The LR for the next update: a linear ramp over the first ``warmup_updates`` updates, then a
        linear decay to ``final_lr_ratio`` x LR at ``total_env_steps`` frames learned from.  The clock
        is version x ``frames_per_update`` (every update of a run sees the same batch shape), so a
        resumed learner continues it exactly."""
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        if self.version < cfg.warmup_updates:
            return cfg.learning_rate * (self.version + 1) / cfg.warmup_updates
        warmup_frames = cfg.warmup_updates * frames_per_update
        frames = self.version * frames_per_update
        return cfg.learning_rate * linear_warmup_decay(frames, cfg.total_env_steps, warmup_frames, cfg.final_lr_ratio)

    def update(self, unrolls: Sequence[Unroll]) -> dict[str, float]:
        cfg, model, dev = self.cfg, self.model, self.device
        if not self.breaker.allow():
            return {"skipped": 1.0, "breaker_open": 1.0}
        batch = batch_unrolls(unrolls, dev)
        n = batch.num_steps
        lr = self.current_lr(n)
        set_lr(self.optimizer, lr)

        # 1. Values and action log-probs of every graph under the pre-update (proximal) policy, then GAE.
        #    Flattened time and env: obs graph i of batch.graphs is sample i.
        b_actions = batch.actions.reshape(n, -1)
        b_masks = batch.masks.reshape(n, -1)
        b_logp = batch.behaviour_log_probs.reshape(n)
        with torch.no_grad():
            out_all = model(collate(batch.graphs, dev))
            prox_dist = MaskedFactoredCategorical([lg[:n] for lg in out_all.logits], b_masks, self.head_names)
            prox_logp, _ = prox_dist.evaluate(b_actions)
            raw_weight = (prox_logp - b_logp).exp()
            b_weight = raw_weight.clamp(max=cfg.behaviour_weight_clip)
        values, bootstrap, finals = batch.split_values(out_all.value)
        rewards, discounts = batch.targets_inputs(finals, cfg.gamma)
        advantages, returns = gae(rewards, values, bootstrap, discounts, cfg.gae_lambda)
        b_adv, b_ret, b_val = advantages.reshape(n), returns.reshape(n), values.reshape(n)

        # 3. Minibatch epochs.
        stats: dict[str, list[float]] = {k: [] for k in ("pg", "v", "ent", "kl", "clip", "gn")}
        steps = skipped = epochs_done = 0
        early_stop = False
        for _epoch in range(cfg.update_epochs):
            perm = self.rng.permutation(n)
            for start in range(0, n, cfg.minibatch_size):
                idx_np = perm[start : start + cfg.minibatch_size]
                idx = torch.from_numpy(idx_np).to(dev)
                out = model(collate(batch.graphs.select(idx_np), dev))
                dist = MaskedFactoredCategorical(out.logits, b_masks[idx], self.head_names)
                new_logp, entropy = dist.evaluate(b_actions[idx])
                logratio = new_logp - prox_logp[idx]  # the trust region is centred on the proximal policy
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = k3_kl(logratio)
                    clipfrac = float(((ratio - 1).abs() > cfg.clip_coef).float().mean())
                if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                    early_stop = True  # the policy already moved too far: no further step at all
                    break

                mb_adv = b_adv[idx]
                if cfg.norm_adv and mb_adv.numel() > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = clipped_surrogate(ratio, mb_adv, b_weight[idx], cfg.clip_coef)

                clip_v = cfg.clip_coef if cfg.clip_vloss else None
                v_loss = value_loss(out.value, b_val[idx], b_ret[idx], clip_v)
                ent = entropy.mean()
                loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss

                stepped, grad_norm = guarded_step(
                    loss, model.parameters(), self.optimizer, self.breaker, cfg.max_grad_norm
                )
                if not stepped:
                    skipped += 1
                    break  # bad numbers: drop the rest of this batch
                steps += 1
                for key, val in (("pg", pg_loss), ("v", v_loss), ("ent", ent)):
                    stats[key].append(float(val.detach()))
                stats["kl"].append(approx_kl)
                stats["clip"].append(clipfrac)
                stats["gn"].append(grad_norm)
            if early_stop or skipped:
                break
            epochs_done += 1

        if steps:
            self.version += 1
        with torch.no_grad():
            behaviour_kl = k3_kl(raw_weight.log())  # KL(behaviour || proximal)

        def mean(key: str) -> float:
            return float(np.mean(stats[key])) if stats[key] else float("nan")

        return {
            "policy_loss": mean("pg"),
            "value_loss": mean("v"),
            "entropy": mean("ent"),
            "entropy_loss": -cfg.ent_coef * mean("ent"),
            "approx_kl": mean("kl"),
            "clip_fraction": mean("clip"),
            "grad_norm": mean("gn"),
            "explained_variance": explained_variance(b_val, b_ret),
            "learning_rate": lr,
            "optimizer_steps": float(steps),
            "epochs_completed": float(epochs_done),
            "early_stopped": float(early_stop),
            "skipped_steps": float(skipped),
            "breaker_open": 0.0,
            "is_weight_mean": float(raw_weight.mean()),
            "is_weight_truncated_fraction": float((raw_weight > cfg.behaviour_weight_clip).float().mean()),
            "behaviour_kl": behaviour_kl,
            "skipped": float(steps == 0),
            "policy_version": float(self.version),
        }
