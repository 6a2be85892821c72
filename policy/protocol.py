"""The behaviour-policy interface every actor, evaluator and server acts through.

A `Policy` maps N observation graphs and their joint action masks to one action per graph; the learned
`ModelPolicy`, the hot-swappable `SwappablePolicy` and the baseline controllers' adapter all implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tamiyo.contracts.graph import PackedGraphs


@dataclass
class PolicyStep:
    actions: np.ndarray  # int [N, H]
    log_probs: np.ndarray  # float [N], behaviour log-probs of those actions
    version: int  # behaviour policy version


class Policy(Protocol):
    def __call__(self, graphs: PackedGraphs, masks: np.ndarray) -> PolicyStep:
        """``graphs``: N graphs (one per env); ``masks``: bool [N, M] joint action masks."""
        ...
