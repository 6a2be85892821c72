"""The compose testbed stays valid without a Docker engine.

- compose/docker-compose.yml validates against the Compose Specification JSON schema
  (vendored in check-jsonschema as ``vendor.compose-spec``; nothing is downloaded);
- every ``tamiyo ...`` command in it (service commands, entrypoint + command, health checks)
  parses with the real CLI parser, so flags stay in step with the code;
- the services agree with each other (one run, policy ids that someone publishes, unique
  actor ids) and the collector config wires what it defines.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML  # comes with check-jsonschema (test extra), as does the Compose schema

from tamiyo.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
OTEL = ROOT / "compose" / "otel-collector.yaml"
DOCKERFILE = ROOT / "compose" / "Dockerfile"


def _load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load(COMPOSE)


def _tamiyo_commands(compose: dict) -> dict[str, list[list[str]]]:
    """service -> every tamiyo argv it runs (entrypoint + command joined, plus health checks)."""
    out: dict[str, list[list[str]]] = {}
    for name, svc in compose["services"].items():
        argvs = []
        entry, command = svc.get("entrypoint") or [], svc.get("command") or []
        assert isinstance(entry, list) and isinstance(command, list), f"{name}: use exec (list) form"
        argv = [*entry, *command]
        if argv and argv[0] == "tamiyo":
            argvs.append(argv)
        test = (svc.get("healthcheck") or {}).get("test") or []
        if len(test) > 1 and test[0] == "CMD" and test[1] == "tamiyo":
            argvs.append(test[1:])
        if argvs:
            out[name] = argvs
    return out


def _flag(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_compose_file_matches_the_compose_spec_schema():
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_an_invalid_file(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  kafka:\n    image: apache/kafka:4.1.0\n    restart: sometimes\n    bogus: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0


def test_every_tamiyo_command_parses_with_the_cli(compose):
    commands = _tamiyo_commands(compose)
    expected = {"topics-init", "learner", "replay", "actor-0", "actor-1", "serve", "promote"}
    assert expected <= set(commands)
    parser = build_parser()
    for service, argvs in commands.items():
        for argv in argvs:
            try:
                args = parser.parse_args(argv[1:])
            except SystemExit as err:  # argparse reports the bad flag on stderr
                pytest.fail(f"{service}: `{' '.join(argv)}` does not parse ({err})")
            assert callable(args.handler)
    subcommands = {argvs[0][1] for argvs in commands.values()}
    assert {"topics", "learner", "replay", "actor", "serve", "promote"} <= subcommands


def test_services_agree(compose):
    services = compose["services"]
    commands = {name: argvs[0] for name, argvs in _tamiyo_commands(compose).items()}
    on_the_bus = {name: argv for name, argv in commands.items() if argv[1] != "keys"}
    runs = {name: _flag(argv, "--run") for name, argv in on_the_bus.items()}
    assert set(runs.values()) == {"compose"}, runs
    assert {_flag(argv, "--bootstrap") for argv in on_the_bus.values()} == {"kafka:9092"}
    actor_ids = [_flag(argv, "--actor-id") for name, argv in commands.items() if argv[1] == "actor"]
    assert len(actor_ids) == len(set(actor_ids)) >= 2
    published = {_flag(commands["learner"], "--policy-id"), _flag(commands["promote"], "--policy-id")}
    assert _flag(commands["serve"], "--policy-id") in published
    assert {_flag(argv, "--policy-id") for argv in commands.values() if argv[1] == "actor"} <= published
    # The replay checks trajectories against the env the learner trains on (bad ones dead-lettered at ingest).
    assert _flag(commands["replay"], "--env") == _flag(commands["learner"], "--env")
    # Kafka: the official image, KRaft, health-checked; everyone starts after the topics exist.
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "healthcheck" in kafka
    for name in ("learner", "replay", "actor-0", "actor-1", "serve"):
        deps = services[name]["depends_on"]
        assert deps["topics-init"]["condition"] == "service_completed_successfully"
        assert deps["kafka"]["condition"] == "service_healthy"
        assert not services[name]["healthcheck"].get("disable", False)
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_only_the_learner_and_promote_can_read_the_signing_key(compose):
    """No key ships in the file; an init step makes one; readers get the public key only."""
    services = compose["services"]
    assert "TAMIYO_POLICY_KEY" not in COMPOSE.read_text()
    init = _tamiyo_commands(compose)["keys-init"][0]
    assert init[1:3] == ["keys", "generate"] and "--if-missing" in init
    signing_dir, public_dir = _flag(init, "--out"), _flag(init, "--public-out")

    def mounts(name: str) -> dict[str, str]:  # mount point -> volume
        return {v.split(":")[1]: v.split(":")[0] for v in services[name].get("volumes", [])}

    signing_volume, public_volume = mounts("keys-init")[signing_dir], mounts("keys-init")[public_dir]
    for name in ("learner", "promote"):
        env = services[name]["environment"]
        assert env["TAMIYO_POLICY_SIGNING_KEY"].startswith(signing_dir + "/")
        assert mounts(name)[signing_dir] == signing_volume
        assert f"{signing_volume}:{signing_dir}:ro" in services[name]["volumes"]
    for name in ("actor-0", "actor-1", "serve"):
        assert services[name]["environment"]["TAMIYO_POLICY_TRUSTED_KEYS"] == public_dir
        assert mounts(name).get(public_dir) == public_volume
        assert signing_volume not in mounts(name).values(), f"{name} can read the private key"
        assert services[name]["depends_on"]["keys-init"]["condition"] == "service_completed_successfully"
    assert {n for n in services if signing_volume in mounts(n).values()} == {"keys-init", "learner", "promote"}


def test_collector_config_and_dockerfile(compose):
    collector = compose["services"]["otel-collector"]
    mounted = [v.split(":")[0] for v in collector["volumes"]]
    assert "./otel-collector.yaml" in mounted
    config = _load(OTEL)
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{component} is not defined under {kind}"
    assert set(config["service"]["extensions"]) <= set(config["extensions"])
    # Every service exports OTLP to the collector's gRPC port.
    assert "4317:4317" in collector["ports"]
    env = compose["services"]["serve"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    # The image builds from the repository: every COPY source exists.
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    # ... and copies every folder the package is built from (pyproject's package-dir), so `pip install .` works.
    package_dirs = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    )
    copied = {
        src for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]
    }
    assert package_dirs <= copied, f"Dockerfile does not copy {sorted(package_dirs - copied)}"
    assert compose["services"]["learner"]["build"]["dockerfile"] == "compose/Dockerfile"
