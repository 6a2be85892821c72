"""`make_env(name, seed, **kw)` and `make_vec_env(name, seeds, **kw)`: the one place env names become envs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tamiyo.contracts.env_schemas import HOST_ENVS, PAIRED_HOST_TRAIN, calibration_path, host_env_base
from tamiyo.producers.env_api import Env
from tamiyo.producers.host_env import HostConfig
from tamiyo.producers.vec_env import SyncVecEnv, VecEnv

_CONFIG_FIELDS = frozenset(HostConfig.__dataclass_fields__)


def _host_config(kw: dict[str, Any]) -> HostConfig:
    unknown = set(kw) - _CONFIG_FIELDS
    if unknown:
        raise TypeError(f"unknown host env options: {sorted(unknown)}")
    return HostConfig(**kw)


def _sim_params(name: str) -> Any:
    """The SimParams of ``host-sim:FILE`` (None: host-sim's defaults)."""
    path = calibration_path(name)
    if path is None:
        return None
    from tamiyo.producers.calibration_file import load_sim_params

    return load_sim_params(path)


def make_env(name: str, seed: int = 0, **kw: Any) -> Env:
    """``host-train`` / ``host-sim`` / ``host-sim:FILE`` (kw: HostConfig fields; FILE: a calibration file of
    `tamiyo calibrate`) or ``gym:<id>`` (kw: gymnasium make kwargs).

    ``seed`` fixes the stream of tasks that ``reset()`` without a seed walks through.
    """
    if host_env_base(name) == "host-sim":
        from tamiyo.producers.host_sim import make_host_sim

        return make_host_sim(seed=seed, config=_host_config(kw), params=_sim_params(name))
    if name == "host-train":
        # Lazy: host-train needs torch and scikit-learn, host-sim must stay light.
        from tamiyo.producers.host_train import make_host_train

        return make_host_train(seed=seed, config=_host_config(kw))
    if name == PAIRED_HOST_TRAIN:
        raise ValueError(f"{PAIRED_HOST_TRAIN} is a training env of the learned controller's actors (make_vec_env); "
                         "a controller is evaluated on host-train")  # fmt: skip
    if name.startswith("gym:"):
        from tamiyo.producers.gym_env import GymGraphEnv

        return GymGraphEnv(name, **kw)
    known = f"{', '.join(HOST_ENVS)}, {PAIRED_HOST_TRAIN}, host-sim:FILE, gym:<id>"
    raise ValueError(f"unknown env {name!r}; known: {known}")


def make_vec_env(name: str, seeds: Sequence[int], **kw: Any) -> VecEnv:
    """``len(seeds)`` envs of ``name`` stepped as one (env i's task stream from ``seeds[i]``, as `make_env`):
    host-sim as arrays (`VecHostSim`, bit-identical to its scalar envs), host-train with its host networks
    trained as one batch (`VecHostTrain`: the same tasks and lifecycle, each epoch as `TorchHost`'s to rounding),
    ``host-train:paired`` as host-train rewarded by the gain over a `none` twin per env, the others through
    `SyncVecEnv`."""
    if host_env_base(name) == "host-sim":
        from tamiyo.producers.vec_host_sim import VecHostSim

        return VecHostSim(len(seeds), seeds, config=_host_config(kw), params=_sim_params(name))
    if host_env_base(name) == "host-train":
        from tamiyo.producers.vec_host_train import VecHostTrain

        return VecHostTrain(len(seeds), seeds, config=_host_config(kw), paired_baseline=name == PAIRED_HOST_TRAIN)
    return SyncVecEnv([make_env(name, seed=s, **kw) for s in seeds])
