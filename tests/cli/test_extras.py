"""The core install runs the services; a command that needs an extra says, in one line, what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tamiyo.cli import extras
from tamiyo.cli.main import main

# What the extras provide (cli/extras.py); tqdm is not among them: torch_geometric itself imports it.
EXTRA_ONLY = ("cramjam", "matplotlib", "sklearn", "tensorboard")


def test_the_services_import_and_run_host_sim_without_any_extra():
    # A finder that answers "not installed" for the extras' modules, ahead of the real ones.
    script = textwrap.dedent(f"""
        import importlib.abc, importlib.machinery, sys
        BLOCKED = {EXTRA_ONLY!r}

        class Refuse(importlib.abc.Loader):
            def create_module(self, spec):
                raise ModuleNotFoundError(f"No module named {{spec.name!r}}", name=spec.name)

            def exec_module(self, module):
                pass

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                return importlib.machinery.ModuleSpec(name, Refuse()) if name.split(".")[0] in BLOCKED else None

        sys.meta_path.insert(0, Block())
        import tamiyo.producers.actor, tamiyo.consumers.replay_service, tamiyo.learner.service
        import tamiyo.consumers.serving
        from tamiyo.cli.main import build_parser
        from tamiyo.producers.envs import make_vec_env

        build_parser()
        env = make_vec_env("host-sim", [0, 1])
        env.reset()
        print(sorted(m for m in BLOCKED if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["eval", "--env", "host-train", "--tasks", "1"], "host-train"),
        (["actor", "--env", "host-train", "--bootstrap", "127.0.0.1:1"], "host-train"),
        (["train", "--updates", "1", "--bootstrap", "127.0.0.1:1"], "train"),
        (["demo", "--bootstrap", "127.0.0.1:1"], "kafka-zstd"),
    ],
)
def test_a_command_without_its_extra_stops_with_one_line_that_says_what_to_install(monkeypatch, capsys, argv, extra):
    # OpenTelemetry's providers are process-wide and set once: a service command run in this process must
    # not take them from tests/services/test_tracing.py, which installs its own in-memory exporter.
    import tamiyo.bus.observability

    monkeypatch.setattr(tamiyo.bus.observability, "setup_observability", lambda service: None)
    monkeypatch.setitem(extras.EXTRAS, extra, ("tamiyo_no_such_module",))
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"pip install 'tamiyo[{extra}]'" in lines[0] and "tamiyo_no_such_module" in lines[0]


def test_every_extra_is_declared_in_pyproject():
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras.EXTRAS) <= set(declared)
    assert declared["all"] == [f"tamiyo[{','.join(extras.EXTRAS)}]"]
