"""Baseline controllers for the host envs, behind one `Controller` protocol.

A controller sees what the actor sees (the observation, whose mask it must
respect) plus the env's plain ``info`` dict (HostEnv.info()), and returns an
action [op, slot, blueprint].  A trained policy becomes a controller by
implementing the same two methods.

- ``none``: always WAIT.
- ``random``: uniform over the valid joint actions.
- ``heuristic``: the hand-written baseline: germinate the default blueprint at
  the first dormant slot when validation loss plateaus, advance on a fixed
  schedule, cull on regression.  One seed at a time.
- ``tuned``: a better hand-written schedule that reads the signals a learned
  policy could read (slot pressure, blend gain, epoch budget): germinate early
  at the highest-pressure slot with the largest affordable blueprint, cull seeds
  whose blend gain is negative before blending them, lower the LR for the last
  epochs.  It exists to show headroom over ``heuristic``.
- `LookaheadOracle` (not in BASELINES, needs the env): privileged rollout
  lookahead with foresight of the env's noise; an upper-bound probe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tamiyo.contracts.host_schema import (
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_WAIT,
)
from tamiyo.producers.env_api import Observation
from tamiyo.producers.lifecycle import Stage

Info = dict[str, Any]


class Controller(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None:
        """Start of an episode."""
        ...

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        """An action [op, slot, blueprint] allowed by ``observation.action_mask``."""
        ...


def _action(op: int, slot: int = 0, blueprint: int = 0) -> np.ndarray:
    return np.array([op, slot, blueprint], dtype=np.int64)


def _mask3(observation: Observation, info: Info) -> np.ndarray:
    return observation.action_mask.reshape(NUM_OPS, info["num_slots"], info["num_blueprints"])


def _first_allowed(mask: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    for a in candidates:
        if mask[a[0], a[1], a[2]]:
            return a
    return _action(OP_WAIT)


class NoneController:
    name = "none"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        return _action(OP_WAIT)


class RandomController:
    """Uniform over the valid joint actions (not over heads: every valid triple is equally likely)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        valid = np.flatnonzero(observation.action_mask)
        index = int(self._rng.choice(valid))
        return np.array(
            np.unravel_index(index, (NUM_OPS, env_info["num_slots"], env_info["num_blueprints"])),
            dtype=np.int64,
        )


class HeuristicController:
    """Plateau-triggered germination, fixed advance schedule, cull on regression."""

    name = "heuristic"

    def __init__(
        self,
        plateau_epochs: int = 2,
        advance_every: int = 2,
        regression: float = 0.02,
        blueprint_id: str = "residual_mlp",
    ) -> None:
        self.plateau_epochs = plateau_epochs
        self.advance_every = advance_every
        self.regression = regression
        self.blueprint_id = blueprint_id

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        mask = _mask3(observation, env_info)
        slots = env_info["slots"]
        live = [i for i, s in enumerate(slots) if s["stage"] in _LIVE]
        for i in live:
            s = slots[i]
            # Cull on regression: the seed is in the output and accuracy fell since germination.
            if s["stage"] in _IN_OUTPUT and s["acc_delta"] < -self.regression and mask[OP_CULL, i, 0]:
                return _action(OP_CULL, i)
            if s["epochs_in_stage"] >= self.advance_every and mask[OP_ADVANCE, i, 0]:
                return _action(OP_ADVANCE, i)
            if s["stage"] == Stage.BLENDING and mask[OP_ADVANCE, i, 0]:
                return _action(OP_ADVANCE, i)
        if not live and env_info["plateau"] >= self.plateau_epochs:
            bp = env_info["blueprint_ids"].index(self.blueprint_id)
            dormant = [i for i, s in enumerate(slots) if s["stage"] == Stage.DORMANT]
            return _first_allowed(mask, [_action(OP_GERMINATE, i, bp) for i in dormant])
        return _action(OP_WAIT)


class TunedController:
    """A smarter schedule over observable signals; see the module docstring."""

    name = "tuned"

    BLUEPRINT_ORDERS = ("largest", "smallest")

    def __init__(
        self, train_epochs: int = 3, lr_decay_epochs: int = 6, lr_decay_steps: int = 2, blueprint: str = "largest"
    ) -> None:
        if blueprint not in self.BLUEPRINT_ORDERS:
            raise ValueError(f"blueprint must be one of {self.BLUEPRINT_ORDERS}, not {blueprint!r}")
        self.train_epochs = train_epochs
        self.lr_decay_epochs = lr_decay_epochs
        self.lr_decay_steps = lr_decay_steps
        self.blueprint = blueprint  # which affordable blueprint to try first: the largest or the cheapest
        self._lr_downs = 0

    def reset(self, seed: int | None = None) -> None:
        self._lr_downs = 0

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        mask = _mask3(observation, env_info)
        slots = env_info["slots"]
        remaining = env_info["epoch_budget"] - env_info["epoch"]
        for i, s in enumerate(slots):
            stage = s["stage"]
            if stage == Stage.GERMINATED:
                return _first_allowed(mask, [_action(OP_ADVANCE, i)])
            if stage == Stage.TRAINING and s["epochs_in_stage"] >= self.train_epochs:
                # Blend only seeds whose first-order gain is positive; cull the others early.
                op = OP_ADVANCE if s["blend_gain"] > 0.0 else OP_CULL
                return _first_allowed(mask, [_action(op, i)])
            if stage in (Stage.BLENDING, Stage.PROBATIONARY) and mask[OP_ADVANCE, i, 0]:
                op = OP_CULL if s["acc_delta"] < -0.03 and s["blend_gain"] < 0.0 else OP_ADVANCE
                return _first_allowed(mask, [_action(op, i)])
        # Late in the run: anneal the LR (less SGD noise) instead of growing.
        if remaining <= self.lr_decay_epochs and self._lr_downs < self.lr_decay_steps and mask[OP_LR_DOWN, 0, 0]:
            self._lr_downs += 1
            return _action(OP_LR_DOWN)
        # A seed needs ~train + blend + probation epochs to pay off; don't start one too late.
        if remaining > self.train_epochs + 6:
            dormant = [i for i, s in enumerate(slots) if s["stage"] == Stage.DORMANT]
            dormant.sort(key=lambda i: -slots[i]["pressure"])
            # Biggest (or cheapest) blueprint first (costs differ per slot; the mask says what is affordable).
            sign = -1 if self.blueprint == "largest" else 1
            by_size = sorted(range(env_info["num_blueprints"]), key=lambda b: sign * env_info["blueprint_costs"][0][b])
            candidates = [_action(OP_GERMINATE, i, b) for i in dormant[:1] for b in by_size]
            return _first_allowed(mask, candidates)
        return _action(OP_WAIT)


class LookaheadOracle:
    """Privileged upper-bound probe, *not* a baseline: it holds the env itself.

    At every step it copies the env (including its random state, so it sees
    the future noise), tries each allowed action followed by ``rollout``
    controller play to the end of the episode, and takes the best.  It only
    measures how much return is on the table (host-sim; far too slow for
    host-train).
    """

    name = "oracle"

    def __init__(self, env: Any, rollout: Controller | None = None) -> None:
        self.env = env
        self.rollout = rollout or TunedController()

    def reset(self, seed: int | None = None) -> None:
        self.rollout.reset(seed)

    def act(self, observation: Observation, env_info: Info) -> np.ndarray:
        shape = (NUM_OPS, env_info["num_slots"], env_info["num_blueprints"])
        candidates = [np.array(np.unravel_index(i, shape)) for i in np.flatnonzero(observation.action_mask)]
        best, best_return = candidates[0], -np.inf
        for action in candidates:
            ret = self._simulate(action)
            if ret > best_return:
                best, best_return = action, ret
        return best

    def _simulate(self, first: np.ndarray) -> float:
        sim = copy.deepcopy(self.env)
        rollout = copy.deepcopy(self.rollout)
        result = sim.step(first)
        total = result.reward
        while not result.terminated:
            result = sim.step(rollout.act(result.observation, sim.info()))
            total += result.reward
        return total


_LIVE = frozenset({Stage.GERMINATED, Stage.TRAINING, Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY})
_IN_OUTPUT = frozenset({Stage.BLENDING, Stage.SHADOWING, Stage.PROBATIONARY})

BASELINES: dict[str, Callable[[int], Controller]] = {
    "none": lambda seed: NoneController(),
    "random": lambda seed: RandomController(seed),
    "heuristic": lambda seed: HeuristicController(),
    "tuned": lambda seed: TunedController(),
}


def make_controller(name: str, seed: int = 0) -> Controller:
    try:
        return BASELINES[name](seed)
    except KeyError:
        raise ValueError(f"unknown controller {name!r}; known: {sorted(BASELINES)}") from None
