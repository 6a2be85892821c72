"""No default keys: services that sign or verify refuse to start without one (one line, exit 2);
`--insecure-dev-keys` is the loud, explicit way to run with a throwaway keypair; `tamiyo keys` makes
and shows keys; `tamiyo train` hands the private key to the learner alone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tamiyo.bus.admin import ensure_topics
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.contracts.signing import verify_snapshot
from tamiyo.contracts.topics import Topics
from tests.keys import SIGNER, write_keys

from .helpers import read

TAMIYO = [sys.executable, "-m", "tamiyo.cli.main"]
KEY_VARS = ("TAMIYO_POLICY_SIGNING_KEY", "TAMIYO_POLICY_TRUSTED_KEYS", "TAMIYO_POLICY_KEY")


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    return env | {"TAMIYO_DEV_KEYS_DIR": str(tmp_path / "dev-keys")} | extra


def _run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*TAMIYO, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (
            ["learner", "--env", "host-sim"],
            "no policy signing key: pass --signing-key FILE or set TAMIYO_POLICY_SIGNING_KEY",
        ),
        (["serve", "--env", "host-sim"], "no trusted policy keys: pass --trusted-keys FILE"),
        (["actor", "--env", "host-sim", "--controller", "policy"], "no trusted policy keys"),
    ],
)
def test_a_service_without_keys_exits_with_one_line_that_says_how_to_make_one(tmp_path, argv, needs):
    done = _run([*argv, "--bootstrap", "127.0.0.1:1"], _env(tmp_path), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and needs in lines[0], done.stderr
    assert "tamiyo keys generate --out DIR" in lines[0]
    assert not (tmp_path / "dev-keys").exists()  # nothing made behind the user's back


def test_empty_malformed_and_open_keys_are_refused(tmp_path):
    private, public = write_keys(tmp_path / "k")
    public.chmod(0o600)  # given where the private key belongs: refused for what it is, not for its mode
    cases = {
        "empty variable": (["learner"], {"TAMIYO_POLICY_SIGNING_KEY": ""}, "is set but empty"),
        "public as private": (["learner", "--signing-key", str(public)], {}, "not an unencrypted PEM private key"),
        "garbage trusted": (["serve", "--trusted-keys", str(tmp_path / "junk.pem")], {}, "junk.pem"),
    }
    (tmp_path / "junk.pem").write_text("not a key")
    open_copy = tmp_path / "open.pem"
    open_copy.write_bytes(private.read_bytes())
    open_copy.chmod(0o644)
    cases["open private key"] = (["learner", "--signing-key", str(open_copy)], {}, "readable by others")
    for name, (argv, extra, message) in cases.items():
        done = _run([*argv, "--env", "host-sim", "--bootstrap", "127.0.0.1:1"], _env(tmp_path, **extra), timeout=60)
        assert done.returncode == 2 and message in done.stderr, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)


def test_keys_generate_and_show(tmp_path):
    out = json.loads(_run(["keys", "generate", "--out", str(tmp_path / "k")], _env(tmp_path)).stdout)
    private = tmp_path / "k" / "policy_signing.pem"
    assert out["private_key"] == str(private) and stat.S_IMODE(private.stat().st_mode) == 0o600
    again = _run(["keys", "generate", "--out", str(tmp_path / "k")], _env(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    kept = json.loads(
        _run(["keys", "generate", "--out", str(tmp_path / "k"), "--if-missing", "--public-out", str(tmp_path / "pub")],
             _env(tmp_path)).stdout
    )  # fmt: skip
    assert kept["key_id"] == out["key_id"] and not kept["generated"]
    shown = json.loads(_run(["keys", "show", str(private), str(tmp_path / "pub")], _env(tmp_path)).stdout)
    assert shown[0] == {"path": str(private), "kind": "private", "key_id": out["key_id"]}
    assert shown[1]["key_ids"] == [out["key_id"]]
    assert "PRIVATE KEY" not in json.dumps(shown) + json.dumps(out)


@pytest.mark.broker
async def test_insecure_dev_keys_warn_loudly_and_sign_what_dev_readers_accept(kafka_settings, run_name, tmp_path):
    topics = Topics.for_run(run_name)
    await ensure_topics(kafka_settings, topics)
    env = _env(tmp_path)
    done = _run(["learner", "--env", "host-sim", "--hidden", "8", "--run", run_name, "--max-seconds", "1",
                 "--insecure-dev-keys", "--bootstrap", kafka_settings.bootstrap], env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING: INSECURE DEVELOPMENT KEYS" in done.stderr
    shown = json.loads(_run(["keys", "show", str(tmp_path / "dev-keys" / "policy_signing.pub.pem")], env).stdout)
    (record,) = await read(kafka_settings, topics.policy, 1, timeout_s=20)
    snap = decode_envelope(record.value, expect=pb.PolicySnapshot).payload
    assert [snap.key_id] == shown[0]["key_ids"]  # signed with the dev key the readers share
    from tamiyo.contracts.key_files import load_trusted

    verify_snapshot(snap, load_trusted([tmp_path / "dev-keys"]))
    assert snap.key_id != SIGNER.key_id
