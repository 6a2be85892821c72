"""V-trace off-policy targets (Espeholt et al. 2018, IMPALA, eq. 1 and section 4.2), ``[T, B]``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VTraceReturns:
    vs: torch.Tensor  # [T, B] V-trace value targets
    pg_advantages: torch.Tensor  # [T, B] rho_t * (r_t + discount_t * vs_{t+1} - V(x_t))
    log_rhos: torch.Tensor  # [T, B] log(pi / mu), unclipped
    clipped_rhos: torch.Tensor  # [T, B] min(rho_bar, rho)
    cs: torch.Tensor  # [T, B] lambda * min(c_bar, rho)


@torch.no_grad()
def vtrace(
    behaviour_log_probs: torch.Tensor,
    target_log_probs: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace targets with the recursion
    ``vs_t - V_t = delta_t + discount_t * c_t * (vs_{t+1} - V_{t+1})``, where
    ``delta_t = rho_t * (r_t + discount_t * V_{t+1} - V_t)`` and ``V_T`` = bootstrap.
    A threshold of None disables that clip.  ``lambda_`` < 1 is the paper's remark in section 4.2,
    ``c_t = lambda * min(c_bar, rho_t)``: on-policy, vs is then the TD(lambda) return, leaning more
    on the value function (less variance, more bias).  No gradient flows through the result.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lambda_}")
    log_rhos = target_log_probs - behaviour_log_probs
    rhos = log_rhos.exp()
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    cs = rhos if clip_c_threshold is None else rhos.clamp(max=clip_c_threshold)
    if lambda_ != 1.0:
        cs = lambda_ * cs

    values_next = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_next - values)
    decay = discounts * cs
    # Backward recursion over time; each step is a vector op over the batch.  (A [B, T, T]
    # cumprod/bmm form avoids the loop but measured no faster on CPU at T=20.)
    acc = torch.zeros_like(bootstrap_value)
    vs_minus_v = torch.empty_like(values)
    for t in reversed(range(values.shape[0])):
        acc = deltas[t] + decay[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values

    vs_next = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (rewards + discounts * vs_next - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, log_rhos=log_rhos, clipped_rhos=clipped_rhos, cs=cs)
