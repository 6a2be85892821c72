"""PPO (clipped surrogate) on batches of `Unroll`s, CleanRL-style.

One call to `PPOLearner.update` is one PPO iteration: values of every graph
under the current policy -> GAE (truncations bootstrapped from their final
observation) -> ``update_epochs`` passes of shuffled minibatches.  The KL
early stop is checked on every minibatch *before* its optimizer step and ends
the whole update, not just the current epoch.
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
    total_env_steps: int = 1_000_000
    rollout_length: int = 2048
    num_envs: int = 16
    gamma: float = 0.99
    gae_lambda: float = 0.95
    norm_adv: bool = True
    clip_vloss: bool = True
    adam_eps: float = 1e-5

    @property
    def batch_steps(self) -> int:
        return self.rollout_length * self.num_envs

    @property
    def total_updates(self) -> int:
        return max(1, self.total_env_steps // self.batch_steps)


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

    def current_lr(self) -> float:
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        frac = linear_warmup_decay(self.version, cfg.total_updates, cfg.warmup_updates, cfg.final_lr_ratio)
        return cfg.learning_rate * frac

    def update(self, unrolls: Sequence[Unroll]) -> dict[str, float]:
        cfg, model, dev = self.cfg, self.model, self.device
        if not self.breaker.allow():
            return {"skipped": 1.0, "breaker_open": 1.0}
        lr = self.current_lr()
        set_lr(self.optimizer, lr)

        # 1. Values of every graph under the pre-update policy, then GAE.
        batch = batch_unrolls(unrolls, dev)
        with torch.no_grad():
            values_all = model(collate(batch.graphs, dev)).value
        values, bootstrap, finals = batch.split_values(values_all)
        rewards, discounts = batch.targets_inputs(finals, cfg.gamma)
        advantages, returns = gae(rewards, values, bootstrap, discounts, cfg.gae_lambda)

        # 2. Flatten time and env: obs graph i of batch.graphs is sample i.
        n = batch.num_steps
        b_actions = batch.actions.reshape(n, -1)
        b_masks = batch.masks.reshape(n, -1)
        b_logp = batch.behaviour_log_probs.reshape(n)
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
                logratio = new_logp - b_logp[idx]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = float(((ratio - 1) - logratio).mean())  # k3 estimator, as CleanRL
                    clipfrac = float(((ratio - 1).abs() > cfg.clip_coef).float().mean())
                if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                    early_stop = True  # the policy already moved too far: no further step at all
                    break

                mb_adv = b_adv[idx]
                if cfg.norm_adv and mb_adv.numel() > 1:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()

                new_v = out.value
                if cfg.clip_vloss:
                    v_clipped = b_val[idx] + (new_v - b_val[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
                    v_loss = 0.5 * torch.max((new_v - b_ret[idx]) ** 2, (v_clipped - b_ret[idx]) ** 2).mean()
                else:
                    v_loss = 0.5 * ((new_v - b_ret[idx]) ** 2).mean()
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
            "skipped": float(steps == 0),
            "policy_version": float(self.version),
        }
