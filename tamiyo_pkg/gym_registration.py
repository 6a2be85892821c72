"""`register_envs()`: make ``tamiyo/HostSim-v0`` and ``tamiyo/HostTrain-v0`` known to ``gymnasium.make``.

``import tamiyo`` calls it, so it must stay cheap: importing gymnasium takes ~0.25 s, far more than
``import tamiyo`` itself.  When gymnasium is already imported the ids are registered at once;
otherwise a one-shot import hook registers them as soon as gymnasium has been imported.  Entry points
are strings, so the env modules (and host-train's torch) load only when an env is made.  Calling it
again does nothing (no "Overriding environment" warning).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # importlib.abc alone costs ~15 ms of imports (importlib.resources, tempfile, ...)
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

ENTRY_POINTS: dict[str, str] = {
    "tamiyo/HostSim-v0": "tamiyo.producers.gymnasium_envs:HostSimGymEnv",
    "tamiyo/HostTrain-v0": "tamiyo.producers.gymnasium_envs:HostTrainGymEnv",
}


def register_envs() -> None:
    """Register the ids now if gymnasium is imported, else as soon as it is (idempotent either way)."""
    if "gymnasium" in sys.modules:
        _register_now()
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


def _register_now() -> None:
    from gymnasium.envs.registration import register, registry

    for env_id, entry_point in ENTRY_POINTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point)


class _RegisterAfterImport:
    """A meta path finder that finds nothing itself: it hands back gymnasium's own spec, with a loader
    that registers the envs after gymnasium has run (and then takes this finder away)."""

    _searching = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "gymnasium" or self._searching:
            return None
        # Stays in place until gymnasium has really been imported (`_ThenRegister`): a mere
        # `importlib.util.find_spec("gymnasium")` ("is it installed?") must not use up the one shot.
        self._searching = True
        try:
            for finder in sys.meta_path:
                if finder is self:
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None:
                        spec.loader = cast("Loader", _ThenRegister(spec.loader))  # a Loader by duck typing
                    return spec
            return None
        finally:
            self._searching = False


class _ThenRegister:
    """gymnasium's loader, unchanged but for registering once the module has run."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterImport)]  # one shot
        _register_now()

    def __getattr__(self, name: str) -> object:
        # Everything else (get_resource_reader, is_package, ...) is the real loader's.
        return getattr(self._loader, name)
