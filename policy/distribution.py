"""Masked factored categorical over the action heads, with conditional masks.

The environment gives one *joint* mask over all head combinations (C order).
Heads are chosen in order; head j may only pick values that still leave at
least one allowed completion given the earlier choices a_1..a_{j-1}:

    mask_j = joint[a_1, ..., a_{j-1}, :, ...].any(over the later heads)

so every sampled joint action is allowed.  log_prob is the sum of the
per-head conditional log-probs; entropy is the sum of the conditional head
entropies given the earlier (taken or sampled) choices.  Masked choices get
exactly zero probability, and a head with nothing allowed raises instead of
silently producing NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class AllMaskedError(ValueError):
    """A head has no allowed choice (the joint mask allows nothing on this branch)."""


class TakenActionMaskedError(ValueError):
    """An action being scored is not allowed by its mask."""


class MaskedFactoredCategorical:
    def __init__(
        self,
        logits: Sequence[torch.Tensor],
        joint_mask: torch.Tensor,
        head_names: Sequence[str] | None = None,
    ) -> None:
        """``logits``: one [N, size_j] tensor per head; ``joint_mask``: bool [N, prod(size_j)]."""
        self.logits = list(logits)
        self.sizes = tuple(int(lg.shape[-1]) for lg in self.logits)
        self.n = int(joint_mask.shape[0])
        self.names = list(head_names) if head_names is not None else [str(i) for i in range(len(self.sizes))]
        self.joint = joint_mask.to(torch.bool).reshape(self.n, *self.sizes)

    # -- one head ---------------------------------------------------------------
    def _head(self, j: int, sub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional mask [N, size_j] and masked log-probs for head j; ``sub`` is the joint mask
        restricted to the earlier choices, shape [N, size_j, *later]."""
        mask = sub.reshape(self.n, self.sizes[j], -1).any(-1)
        if not bool(mask.any(-1).all()):
            bad = int((~mask.any(-1)).nonzero()[0, 0])
            raise AllMaskedError(f"action head {self.names[j]!r} has no allowed choice (sample {bad})")
        logp = torch.log_softmax(self.logits[j].masked_fill(~mask, float("-inf")), dim=-1)
        return mask, logp

    @staticmethod
    def _entropy(mask: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        # Zero the masked terms *before* multiplying so neither value nor gradient sees -inf.
        safe = torch.where(mask, logp, torch.zeros_like(logp))
        return -(safe.exp() * safe).masked_fill(~mask, 0.0).sum(-1)

    def _walk(
        self, actions: torch.Tensor | None, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.arange(self.n, device=self.joint.device)
        sub = self.joint
        chosen: list[torch.Tensor] = []
        log_prob = torch.zeros(self.n, device=self.logits[0].device)
        entropy = torch.zeros(self.n, device=self.logits[0].device)
        for j in range(len(self.sizes)):
            mask, logp = self._head(j, sub)
            if actions is None:
                a = logp.argmax(-1) if deterministic else torch.multinomial(logp.detach().exp(), 1).squeeze(-1)
            else:
                a = actions[:, j].long()
                if not bool(mask[rows, a].all()):
                    raise TakenActionMaskedError(f"a taken action of head {self.names[j]!r} is masked out")
            chosen.append(a)
            log_prob = log_prob + logp.gather(-1, a.unsqueeze(-1)).squeeze(-1)
            entropy = entropy + self._entropy(mask, logp)
            sub = sub[rows, a]
        return torch.stack(chosen, dim=-1), log_prob, entropy

    # -- public -----------------------------------------------------------------
    def sample(self, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actions int64 [N, H], log_prob [N], entropy [N]); argmax per head if ``deterministic``."""
        with torch.no_grad():
            return self._walk(None, deterministic)

    def evaluate(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_prob [N], entropy [N]) of the given actions [N, H], differentiable."""
        _, log_prob, entropy = self._walk(actions)
        return log_prob, entropy

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.evaluate(actions)[0]

    def head_masks(self, actions: torch.Tensor) -> list[torch.Tensor]:
        """The conditional mask of every head along ``actions`` (for inspection and tests)."""
        rows = torch.arange(self.n, device=self.joint.device)
        sub, out = self.joint, []
        for j in range(len(self.sizes)):
            out.append(sub.reshape(self.n, self.sizes[j], -1).any(-1))
            sub = sub[rows, actions[:, j].long()]
        return out
