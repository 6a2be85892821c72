"""Calibration (issue 14): the recording matches `evaluate`, the discrepancy is 0 for identical data and grows
with the parameter gap, the search keeps its start point and returns its best, the file is checked on load,
and `tamiyo calibrate` writes the file, the report and the plot (on host-sim as the "real" env, so it is fast)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from tamiyo.cli.main import main
from tamiyo.producers.calibration import FITTED, candidates, discrepancy, episode_returns, fit, record, simulate
from tamiyo.producers.calibration_file import CalibrationFileError, calibration_document, load_sim_params
from tamiyo.producers.evaluate import evaluate
from tamiyo.producers.host_backend import HostConfig
from tamiyo.producers.host_sim import SimParams, make_host_sim

CONTROLLERS = ["random", "heuristic", "none"]


def test_the_recording_adds_up_to_what_evaluate_reports():
    transitions = record(make_host_sim(seed=3), ["heuristic"], 5, seed=11)
    want = evaluate("heuristic", "host-sim", 5, 11, split="train")
    assert episode_returns(transitions)["heuristic"] == pytest.approx([t["return"] for t in want["per_task"]])
    assert {t.group for t in transitions} >= {"wait/-", "germinate/dormant"}
    # Each step's accuracy after is the next step's accuracy before, within an episode.
    for a, b in itertools.pairwise(transitions):
        if a.task_seed == b.task_seed and b.epoch == a.epoch + 1:
            assert b.acc_before == a.acc_after


def test_discrepancy_is_zero_for_the_same_data_and_grows_with_the_parameter_gap():
    real = simulate(SimParams(), CONTROLLERS, 24, seed=1)
    same = discrepancy(real, real)
    assert same["total"] == 0.0 and same["mean_ks"] == 0.0 and same["groups"]
    near = discrepancy(real, simulate(SimParams(), CONTROLLERS, 24, seed=2))["total"]
    far = discrepancy(real, simulate(SimParams(speed=0.05, noise_floor=0.2), CONTROLLERS, 24, seed=2))["total"]
    assert 0.0 < near < far


def test_candidates_start_where_told_stay_within_bounds_and_repeat():
    start = SimParams(speed=0.3)
    got = candidates(start, 20, seed=4)
    assert got[0] == start and len(got) == 20 and got == candidates(start, 20, seed=4)
    for params in got:
        for name, (_factor, lo, hi) in FITTED.items():
            assert lo <= getattr(params, name) <= hi
    assert len({p.speed for p in got}) == 20


def test_fit_returns_the_best_candidate_and_beats_a_bad_start_on_its_data():
    truth = SimParams(speed=0.12, noise_floor=0.08)
    real = simulate(truth, CONTROLLERS, 16, seed=5)
    bad_start = SimParams(speed=0.6, noise_floor=0.005)
    best, scored = fit(real, CONTROLLERS, 16, 12, seed=6, start=bad_start)
    totals = [s["total"] for s in scored]
    assert SimParams(**scored[int(np.argmin(totals))]["params"]) == best
    assert min(totals) < totals[0]  # the start is the first candidate: the fit is never worse than it
    assert abs(math.log(best.speed / truth.speed)) < abs(math.log(bad_start.speed / truth.speed))


def test_the_calibration_file_round_trips_and_refuses_what_it_cannot_use(tmp_path):
    path = tmp_path / "c.json"
    params = SimParams(speed=0.2, shock=0.3)
    path.write_text(json.dumps(calibration_document(params, source={"env": "host-train"})))
    assert load_sim_params(path) == params

    def refused(doc: object, match: str) -> None:
        path.write_text(json.dumps(doc))
        with pytest.raises(CalibrationFileError, match=match):
            load_sim_params(path)

    good = calibration_document(params)
    refused({**good, "version": 2}, "not a tamiyo.host-sim-calibration v1")
    refused({**good, "sim_params": {**good["sim_params"], "colour": 1.0}}, "sim_params must be")
    refused({**good, "sim_params": {**good["sim_params"], "speed": "fast"}}, "not a finite number")
    refused({**good, "sim_params": {**good["sim_params"], "shock": 5.0}}, "outside")
    refused({**good, "sim_params": {**good["sim_params"], "width": 8.5}}, "not an integer")
    path.write_text("{ not json")
    with pytest.raises(CalibrationFileError):
        load_sim_params(path)
    path.write_text(json.dumps(good).replace("0.2", "NaN"))
    with pytest.raises(CalibrationFileError, match="not a finite number"):
        load_sim_params(path)


def test_tamiyo_calibrate_writes_the_file_the_report_and_the_plot(tmp_path, capsys):
    out = tmp_path / "cal" / "host_sim.json"
    argv = ["calibrate", "--real-env", "host-sim", "--tasks", "6", "--holdout-tasks", "3", "--candidates", "4",
            "--sim-tasks", "6", "--controllers", "heuristic,none", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    doc = json.loads(out.read_text())
    assert load_sim_params(out) == SimParams(**summary["sim_params"])
    assert len(doc["search"]["scored"]) == 4 and doc["search"]["scored"][0]["params"] == dataclasses.asdict(SimParams())
    assert set(doc["discrepancy"]) == {"fit_default", "fit_calibrated", "holdout_default", "holdout_calibrated"}
    report = out.with_suffix(".md").read_text()
    assert report.startswith("# host-sim calibrated to host-sim") and "| heuristic:wait/- |" in report
    assert out.with_suffix(".png").stat().st_size > 0
    assert main([*argv[:-2], "--controllers", "oracle"]) == 2  # one line, before anything runs


def test_host_sim_colon_file_simulates_with_the_calibration_files_parameters(tmp_path):
    from tamiyo.cli.api import check_env
    from tamiyo.cli.user_errors import UserError
    from tamiyo.contracts.env_schemas import calibration_path, env_schema, host_env_base
    from tamiyo.producers.envs import make_env, make_vec_env

    params = SimParams(speed=0.1, noise_floor=0.1, shock=0.3)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(calibration_document(params)))
    name = f"host-sim:{path}"
    assert host_env_base(name) == "host-sim" and calibration_path(name) == str(path)
    assert host_env_base("host-sim:") is None and calibration_path("host-sim") is None
    assert env_schema(name) == env_schema("host-sim")

    def returns(env_name: str) -> list[float]:
        return [t["return"] for t in evaluate("heuristic", env_name, 4, 2)["per_task"]]

    real_kind = record(make_host_sim(seed=2, config=HostConfig(split="eval"), params=params), ["heuristic"], 4, 2)
    want = episode_returns(real_kind)["heuristic"]
    assert returns(name) == pytest.approx(want) and returns(name) != pytest.approx(returns("host-sim"))
    vec = make_vec_env(name, [7])
    assert vec.params == params  # type: ignore[attr-defined]

    check_env(name)
    path.write_text(json.dumps({**calibration_document(params), "version": 9}))
    with pytest.raises(UserError, match=r"not a tamiyo\.host-sim-calibration v1"):
        check_env(name)
    with pytest.raises(UserError, match="env must be"):
        check_env("host-simulator")
    with pytest.raises(ValueError, match="calibration"):
        make_env(name)


def test_a_saved_recording_is_reused_only_for_the_same_recording(tmp_path, capsys):
    recording = tmp_path / "real.json"
    argv = ["calibrate", "--real-env", "host-sim", "--tasks", "4", "--holdout-tasks", "2", "--candidates", "2",
            "--sim-tasks", "4", "--controllers", "heuristic", "--out", str(tmp_path / "c.json"),
            "--recording", str(recording)]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    saved = json.loads(recording.read_text())
    assert saved["recording"]["tasks"] == 4 and len(saved["fit"]) == 4 * 30  # 4 episodes of 30 epochs
    assert main(argv) == 0
    again = capsys.readouterr()
    assert "reusing the real episodes" in again.err
    assert json.loads(again.out)["discrepancy"] == first["discrepancy"]
    assert main([*argv, "--tasks", "5"]) == 0
    assert "holds another recording" in capsys.readouterr().err
    assert json.loads(recording.read_text())["recording"]["tasks"] == 5
