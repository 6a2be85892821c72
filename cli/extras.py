"""Optional dependencies ("extras"): a command that needs one says how to install it, in one line.

The core install is what a service needs to run (actor, replay, learner, serve on host-sim or a Gymnasium
env).  `tamiyo train`'s progress bar, plots and TensorBoard files, the host-train tasks, and zstd-compressed
Kafka record batches each need more; pyproject.toml names those extras, `make demo`/`make test` install them.
"""

from __future__ import annotations

import importlib.util

from tamiyo.cli.user_errors import UserError

# extra -> the modules it provides (pyproject.toml's [project.optional-dependencies] install them).  tqdm comes
# with torch_geometric (a core dependency) today; it is listed because tamiyo imports it itself.
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("tqdm", "matplotlib", "tensorboard"),
    "host-train": ("sklearn",),
    "kafka-zstd": ("cramjam",),
}


class MissingExtraError(UserError):
    """A command needs an extra that is not installed."""


def missing_modules(extra: str) -> list[str]:
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require_extra(extra: str, needed_by: str) -> None:
    """Raise MissingExtraError (one line: what to install) unless every module of ``extra`` is importable."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(
            f"{needed_by} needs {', '.join(missing)}: pip install 'tamiyo[{extra}]' (or 'tamiyo[all]')"
        )


def require_env_extras(env: str, needed_by: str) -> None:
    """The extras an env needs: host-train (paired too) trains real networks on scikit-learn's datasets."""
    from tamiyo.contracts.env_schemas import host_env_base

    if host_env_base(env) == "host-train":
        require_extra("host-train", f"{needed_by} on host-train")
