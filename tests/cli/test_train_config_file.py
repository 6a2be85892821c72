"""`tamiyo train --config FILE.toml` and runs/<id>/config.toml: TrainConfig <-> TOML, and flags over the file."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tamiyo.cli.main import build_parser, parse
from tamiyo.cli.train_cmd import config_from_args
from tamiyo.cli.train_config import TrainConfig
from tamiyo.cli.train_config_file import (
    ConfigFileError,
    config_to_toml,
    config_values,
    load_config,
    read_config_file,
)


def test_every_optional_field_defaults_to_none_so_leaving_it_out_of_toml_reads_back_the_same():
    # TOML has no null: None fields are written as comments and must read back as their default.
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        hint = str(f.type)
        if "None" in hint:
            assert value is None, f"{f.name}: an optional field with a non-None default would not round-trip"


text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
configs = st.builds(
    TrainConfig,
    env=text,
    actors=st.integers(1, 2**40),
    minutes=st.none() | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    target_return=st.none() | st.floats(allow_nan=False),
    updates=st.none() | st.integers(0, 2**62),
    hidden=st.none() | st.integers(1, 512),
    keep_broker=st.booleans(),
    learner_args=st.lists(text, max_size=4),
    replay_args=st.lists(text, max_size=4),
    data_dir=text,
    preset=st.none() | text,
)


@given(configs)
def test_a_config_round_trips_through_toml_except_its_run_id(config):
    config.run_id = "20261201-impala-host-sim"
    back = TrainConfig(**config_values(config_to_toml(config, header="a\nheader")))
    assert back == dataclasses.replace(config, run_id="")


def test_the_written_file_is_valid_toml_with_comments_for_unset_fields_and_the_run_id():
    out = config_to_toml(TrainConfig(run_id="r1", minutes=2.0, target_return=float("inf")), header="hello")
    assert tomllib.loads(out)["target_return"] == float("inf")
    assert '# run_id = "r1"' in out and "# updates = (unset)" in out and out.startswith("# hello")


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ("actors = 2\nactor = 3", "unknown setting 'actor'"),
        ('actors = "two"', "actors = 'two' is not a int"),
        ("actors = true", "is not a int"),  # a TOML bool is not an int, though Python's bool is
        ("keep_broker = 1", "is not a bool"),
        ("learner_args = [1, 2]", "list of strings"),
        ("minutes = [3]", "is not a float"),
        ("actors = ", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_one_line_that_names_the_setting(toml, complaint):
    with pytest.raises(ConfigFileError) as err:
        config_values(toml, "f.toml")
    assert complaint in str(err.value) and "\n" not in str(err.value)


def test_an_integer_is_accepted_where_a_float_is_expected(tmp_path):
    (tmp_path / "c.toml").write_text("minutes = 3\n")
    assert load_config(tmp_path / "c.toml").minutes == 3.0


def test_a_missing_or_undecodable_file_is_one_line(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read config file"):
        read_config_file(tmp_path / "nope.toml")
    (tmp_path / "latin1.toml").write_bytes('env = "h\xf4te"\n'.encode("latin-1"))
    with pytest.raises(ConfigFileError, match="not UTF-8 text"):
        read_config_file(tmp_path / "latin1.toml")


def _config(argv: list[str]) -> TrainConfig:
    return config_from_args(parse(build_parser(), ["train", *argv]))


def test_flags_override_the_file_wherever_they_stand_and_the_file_overrides_the_preset(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'env = "gym:CartPole-v1"\nalgo = "ppo"\nactors = 3\nseed = 5\npreset = "cartpole"\n'
        'learner_args = ["--lr", "0.001"]\nkeep_broker = true\nminutes = 1\n'
    )
    before = _config(["--seed", "0", "--config", str(path)])
    after = _config(["--config", str(path), "--seed", "0", "--lr", "0.002"])
    for c in (before, after):
        got = (c.env, c.algo, c.actors, c.seed, c.keep_broker, c.minutes)
        assert got == ("gym:CartPole-v1", "ppo", 3, 0, True, 1.0)
        assert c.preset == "cartpole"
    assert before.learner_args == ["--lr", "0.001"]
    assert _config(["--config", str(path), "--no-keep-broker"]).keep_broker is False  # what the file turned on
    assert after.learner_args == ["--lr", "0.001", "--lr", "0.002"]  # the learner's parser takes the last
    # The file's actors (3) win over the cartpole preset's; its envs per actor come from the preset.
    from tamiyo.learner.presets import get_preset

    assert before.envs_per_actor == get_preset("cartpole").pipeline["ppo"].envs_per_actor


def test_a_value_outside_a_flags_choices_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('algo = "sac"\n')
    with pytest.raises(ConfigFileError, match="algo = 'sac' is not one of impala, ppo"):
        _config(["--config", str(path)])


def test_a_runs_config_toml_gives_back_the_same_config_as_a_new_run(tmp_path):
    argv = ["--env", "host-sim", "--preset", "host-sim", "--frames", "1000", "--lr", "0.0005", "--seed", "7"]
    original = _config(argv)
    original.run_id = "old-run"
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(original))
    again = _config(["--config", str(path)])
    assert again == dataclasses.replace(original, run_id="")


@pytest.mark.parametrize("text", ['a"b', "a\\b", "line\nbreak", "tab\there", "del\x7f", "nul\x00", "ünïcode ✓", ""])
def test_strings_that_toml_wants_escaped_round_trip(text):
    config = TrainConfig(data_dir=text, learner_args=[text])
    assert TrainConfig(**config_values(config_to_toml(config))) == config
