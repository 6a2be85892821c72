"""The Python API (`tamiyo.train`, `tamiyo.evaluate`) and the CLI's small courtesies: --version, quiet
imports, one-line errors, a table for a person and JSON for a program."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

import tamiyo
from tamiyo.cli.api import TrainError, check_config
from tamiyo.cli.eval_cmd import format_table
from tamiyo.cli.main import main
from tamiyo.cli.train_config_file import load_config
from tamiyo.cli.user_errors import UserError

TAMIYO = [sys.executable, "-m", "tamiyo.cli.main"]


def test_import_tamiyo_is_cheap_and_the_api_loads_on_first_use():
    code = (
        "import sys, tamiyo; before = {m for m in ('torch', 'aiokafka') if m in sys.modules}; "
        "tamiyo.TrainConfig; print(sorted(before), tamiyo.train.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["[]", "tamiyo.cli.api"]


def test_the_first_import_of_the_graph_library_prints_no_warning_that_is_not_the_users_business():
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import tamiyo.policy.model"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"tamiyo {tamiyo.__version__}"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"algo": "sac"}, "algo must be impala or ppo"),
        ({"env": "cartpole"}, "env must be host-sim, host-sim:FILE, host-train, host-train:paired or gym:<id>"),
        ({"actors": 0}, "actors must be at least 1"),
        ({"replay_mode": "lifo"}, "replay_mode must be"),
        ({"stop_at_target": True}, "stop_at_target needs target_return"),
        ({"init_from": "/nonexistent/policy.safetensors"}, "no policy file"),
        ({"preset": "nope"}, "preset must be one of"),
        ({"minutes": float("nan")}, "minutes must be a positive finite number"),
        ({"minutes": float("inf")}, "minutes must be a positive finite number"),
        ({"frames": 0}, "frames must be a positive finite number"),
        ({"eval_tasks": 0}, "eval_tasks must be at least 1 on a host env"),
        ({"max_restarts": -1}, "max_restarts must not be negative"),
        ({"learner_args": ["--init-sharpen", "2"]}, "^--init-sharpen sharpens the --init-from policy"),
        ({"algo": "ppo", "learner_args": ["--vtrace-lambda", "0.9"]}, "^--vtrace-lambda: only --algo impala"),
        ({"learner_args": ["--lr", "fast"]}, "^learner_args: argument --lr: invalid"),
        ({"learner_args": ["--clip", "0.1"]}, "^learner_args: ambiguous option: --clip could match"),
        ({"learner_args": ["--lr", 0.001]}, r"^learner_args must be strings \(command-line words\)"),
        ({"learner_args": ["--algo", "ppo", "--vtrace-lambda", "0.9"]}, "^--vtrace-lambda: only --algo impala"),
    ],
)
def test_settings_that_would_fail_inside_a_service_are_refused_before_anything_starts(changes, complaint):
    with pytest.raises(UserError, match=complaint):
        check_config(dataclasses.replace(tamiyo.TrainConfig(), **changes))


def test_learner_args_of_the_runs_own_algorithm_and_policy_pass_the_check(tmp_path):
    policy = tmp_path / "p.safetensors"
    policy.write_bytes(b"")  # only its existence is checked here
    for algo, args in (("impala", ["--vtrace-lambda", "0.9", "--device", "cpu"]), ("ppo", ["--gae-lambda", "0.9"])):
        check_config(tamiyo.TrainConfig(algo=algo, learner_args=args))
    check_config(tamiyo.TrainConfig(init_from=str(policy), learner_args=["--init-sharpen", "2"]))
    # A later --algo or --init-from in learner_args wins on the learner's command line, and here too.
    check_config(tamiyo.TrainConfig(learner_args=["--init-from", str(policy), "--init-sharpen", "2"]))
    check_config(tamiyo.TrainConfig(algo="impala", learner_args=["--algo", "ppo", "--gae-lambda", "0.9"]))


def test_secure_is_refused_with_another_cluster():
    from tamiyo.bus.clients import KafkaSettings

    with pytest.raises(UserError, match="local secure broker"):
        check_config(tamiyo.TrainConfig(secure=True), KafkaSettings("127.0.0.1:1"))


def test_from_python_a_preset_gives_the_same_run_as_the_command_line():
    from tamiyo.cli.main import build_parser, parse
    from tamiyo.cli.train_cmd import config_from_args

    cli = config_from_args(parse(build_parser(), ["train", "--preset", "host-sim", "--minutes", "2"]))
    api = tamiyo.TrainConfig.from_preset("host-sim", minutes=2.0)
    assert dataclasses.replace(cli, torch_threads=None) == api
    assert api.actors == 1 and api.envs_per_actor == 128 and api.replay_mode == "fifo"  # not the class defaults
    assert tamiyo.TrainConfig.from_preset("host-sim", actors=3).actors == 3  # a setting beats the preset


@pytest.mark.parametrize("command", ["train", "learner"])
def test_a_flag_of_the_other_algorithm_or_without_its_policy_is_refused_rather_than_ignored(command):
    from tamiyo.cli import learner_cmd, train_cmd
    from tamiyo.cli.main import build_parser, parse

    to_config = {"train": train_cmd.config_from_args, "learner": learner_cmd.config_from_args}[command]
    command = [command] if command == "train" else [command, "--bootstrap", "127.0.0.1:9"]  # parsed, not dialled
    with pytest.raises(UserError, match=r"^--critic-warmup-frames: only --algo impala uses it, and this run is --al"):
        to_config(parse(build_parser(), [*command, "--algo", "ppo", "--critic-warmup-frames", "100"]))
    with pytest.raises(UserError, match=r"^--ppo-epochs, --target-kl: only --algo ppo uses them, and this run is"):
        to_config(parse(build_parser(), [*command, "--algo", "impala", "--ppo-epochs", "2", "--target-kl", "none"]))
    for algo, flag, value in (("impala", "--vtrace-lambda", "0.9"), ("ppo", "--gae-lambda", "0.9")):
        to_config(parse(build_parser(), [*command, "--algo", algo, flag, value]))  # its own flag: accepted
    for algo, dests in learner_cmd.ALGORITHM_ONLY.items():  # every listed flag exists and is refused
        other = "ppo" if algo == "impala" else "impala"
        for dest in dests:
            flag = learner_cmd.HYPERPARAMETER_FLAGS[dest]
            value = "none" if dest == "target_kl" else "true" if dest == "clip_vloss" else "1"
            with pytest.raises(UserError, match=f"^{flag}: only --algo {algo} uses it"):
                to_config(parse(build_parser(), [*command, "--algo", other, flag, value]))
    with pytest.raises(UserError, match=r"^--init-sharpen sharpens the --init-from policy; give --init-from too"):
        to_config(parse(build_parser(), [*command, "--init-sharpen", "2"]))
    with pytest.raises(UserError, match=r"^--init-sharpen must be > 0, not -2.0"):
        to_config(parse(build_parser(), [*command, "--init-from", "p.safetensors", "--init-sharpen", "-2"]))
    got = to_config(parse(build_parser(), [*command, "--init-from", "p.safetensors", "--init-sharpen", "2"]))
    if command[0] == "learner":
        assert got.init_sharpen == 2.0
    else:  # tamiyo train hands it to its learner
        assert got.learner_args[-2:] == ["--init-sharpen", "2.0"]


def test_evaluate_gives_the_same_result_as_the_evaluation_it_wraps_and_refuses_what_it_cannot_run(tmp_path):
    from tamiyo.producers.evaluate import evaluate as reference

    got = tamiyo.evaluate("heuristic", tasks=3, seed=4)
    want = reference("heuristic", "host-sim", 3, 4)
    for key in ("mean_return", "return_ci95", "mean_final_val_acc", "per_task"):
        assert got[key] == want[key]
    with pytest.raises(UserError, match="neither a baseline"):
        tamiyo.evaluate(tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="env must be host-sim, host-sim:FILE, host-train or host-train:paired"):
        tamiyo.evaluate("heuristic", env="gym:CartPole-v1")
    with pytest.raises(UserError, match="at least 1"):
        tamiyo.evaluate("heuristic", tasks=0)


def test_a_policy_trained_on_paired_host_train_is_evaluated_on_host_train(tmp_path):
    from tamiyo.contracts.env_schemas import env_schema
    from tamiyo.policy.model import ModelConfig, TamiyoGNN
    from tamiyo.policy.snapshot import encode_snapshot, write_snapshot

    torch.manual_seed(0)
    path, _ = write_snapshot(encode_snapshot(TamiyoGNN(env_schema("host-train"), ModelConfig(hidden=8)), 1), tmp_path)
    got = tamiyo.evaluate(path, env="host-train:paired", tasks=1, seed=2)
    want = tamiyo.evaluate(path, env="host-train", tasks=1, seed=2)
    assert got["env"] == "host-train" and got["per_task"] == want["per_task"]


def test_eval_prints_json_to_a_program_and_a_short_table_to_a_person():
    done = subprocess.run([*TAMIYO, "eval", "--tasks", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    result = json.loads(done.stdout)  # stdout is a pipe here: JSON
    table = format_table(result).splitlines()
    assert table[0].startswith("heuristic on 2 eval tasks of host-sim")
    lo, hi = result["return_ci95"]
    assert f"{result['mean_return']:.4f}" in table[1] and f"[{lo:.4f}, {hi:.4f}]" in table[1]
    assert len(format_table(result, per_task=True).splitlines()) == len(table) + 1 + 2  # header + one per task
    forced = subprocess.run([*TAMIYO, "eval", "--tasks", "2", "--format", "table"], capture_output=True, text=True)
    assert forced.stdout.startswith("heuristic on 2 eval tasks of host-sim") and "95% CI" in forced.stdout


def test_a_user_error_is_one_line_with_what_to_do(tmp_path):
    done = subprocess.run(
        [*TAMIYO, "eval", "--controller", str(tmp_path / "nope.safetensors")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tamiyo eval: error: '{tmp_path / 'nope.safetensors'}' is neither a baseline (heuristic, random, none, "
        "tuned) nor a policy file"
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text("actors = 'many'\n")
    done = subprocess.run([*TAMIYO, "train", "--config", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"tamiyo: error: {bad}: actors = 'many' is not a int"]


@pytest.mark.broker
def test_train_from_python_returns_the_run_and_writes_a_config_that_runs_it_again(kafka_settings, tmp_path):

    kafka = kafka_settings
    config = tamiyo.TrainConfig(
        env="host-sim", updates=1, actors=1, envs_per_actor=4, batch_size=8, hidden=16, eval_tasks=2,
        out=str(tmp_path), run_id="api",
    )  # fmt: skip
    result = tamiyo.train(config, kafka=kafka, seed=3)
    assert result.ok and result.exit_code == 0 and result.stop_reason == "reached 1 learner updates"
    assert result.summary["updates"] >= 1 and result.summary["frames"] > 0
    assert result.policy_path == tmp_path / "api" / "policy.safetensors" and result.policy_path.exists()
    assert result.report_path is not None and result.report_path.exists()
    assert set(result.evaluation["controllers"]) == {"policy", "heuristic", "none"}
    assert result.verdict == result.evaluation["verdict"]
    assert any(row["source"] == "learner" for row in result.metrics())
    # runs/<id>/config.toml is the same settings, as a new run (no run id: the old one's topics are taken).
    again = load_config(result.out_dir / "config.toml")
    assert again == dataclasses.replace(config, run_id="", seed=3)
    # The policy it wrote is one `tamiyo.evaluate` takes.
    assert tamiyo.evaluate(result.policy_path, tasks=2)["controller"].startswith("policy:")
    with pytest.raises(TrainError, match="choose another --run-id"):
        tamiyo.train(config, kafka=kafka)


def test_secure_with_another_cluster_is_refused_before_anything_starts():
    """One check, in the API, serves `tamiyo train` too (it had its own copy of it)."""
    done = subprocess.run([*TAMIYO, "train", "--secure", "--bootstrap", "127.0.0.1:1"], capture_output=True, text=True)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tamiyo train: error: secure runs on the local secure broker") and "--bootstrap" in line


def test_a_baseline_actor_on_paired_host_train_is_refused_in_one_line():
    done = subprocess.run(
        [*TAMIYO, "actor", "--env", "host-train:paired", "--controller", "heuristic", "--bootstrap", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("host-train:paired trains the learned controller (--controller policy); baselines: host-train")
    )
