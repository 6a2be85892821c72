"""``import tamiyo`` registers the gymnasium ids without importing gymnasium, torch or the env modules."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym

from tamiyo.gym_registration import ENTRY_POINTS, register_envs

ENV_MODULE = "tamiyo.producers.gymnasium_envs"


def _python(code: str) -> None:
    """Run ``code`` in a fresh interpreter (imports are per process), with every warning an error."""
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)


def test_import_tamiyo_first_registers_once_gymnasium_is_imported() -> None:
    _python(
        "import sys, tamiyo\n"
        "assert not {'gymnasium', 'torch', '" + ENV_MODULE + "'} & set(sys.modules), sorted(sys.modules)\n"
        "import gymnasium\n"
        "assert {'tamiyo/HostSim-v0', 'tamiyo/HostTrain-v0'} <= set(gymnasium.registry)\n"
        "assert '" + ENV_MODULE + "' not in sys.modules and 'torch' not in sys.modules\n"
        "gymnasium.make('tamiyo/HostSim-v0').reset(seed=0)\n"
    )


def test_asking_whether_gymnasium_is_installed_does_not_use_up_the_registration() -> None:
    _python(
        "import importlib.util, sys, tamiyo\n"
        "assert importlib.util.find_spec('gymnasium') is not None and 'gymnasium' not in sys.modules\n"
        "import gymnasium\n"
        "assert {'tamiyo/HostSim-v0', 'tamiyo/HostTrain-v0'} <= set(gymnasium.registry)\n"
        "assert not [f for f in sys.meta_path if type(f).__name__ == '_RegisterAfterImport']  # one shot\n"
    )


def test_import_gymnasium_first_registers_at_once() -> None:
    _python(
        "import gymnasium, tamiyo\nassert {'tamiyo/HostSim-v0', 'tamiyo/HostTrain-v0'} <= set(gymnasium.registry)\n"
    )


def test_register_envs_is_idempotent_and_uses_string_entry_points() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns "Overriding environment" on a second register
        register_envs()
        register_envs()
    for env_id, entry_point in ENTRY_POINTS.items():
        assert gym.spec(env_id).entry_point == entry_point
        assert isinstance(entry_point, str)
