"""The read-only views of an episode: info dict, state packet, command."""

from __future__ import annotations

import numpy as np

from tamiyo.contracts.host_schema import OP_GERMINATE
from tamiyo.contracts.validation import validate_payload
from tamiyo.producers import host_views
from tamiyo.producers.blueprints import CATALOG
from tamiyo.producers.host_backend import HostConfig
from tamiyo.producers.host_sim import make_host_sim
from tamiyo.producers.lifecycle import Stage


def _episode():
    env = make_host_sim(seed=0)
    env.reset(seed=1)
    env.step(np.array([OP_GERMINATE, 1, 2]))
    return env._require_episode()


def test_info_reports_slots_costs_and_budget() -> None:
    ep = _episode()
    info = host_views.env_info(ep, HostConfig(), CATALOG)
    assert info["num_slots"] == 3 and info["blueprint_ids"] == [b.blueprint_id for b in CATALOG]
    assert info["blueprint_costs"] == ep.costs and info["blueprint_costs"] is not ep.costs  # a copy
    assert info["added_params"] == ep.costs[1][2] and info["budget_left"] == ep.budget_total - ep.costs[1][2]
    assert [s["stage"] for s in info["slots"]] == [Stage.DORMANT, Stage.GERMINATED, Stage.DORMANT]
    assert info["slots"][0]["acc_delta"] == 0.0  # no seed, no delta


def test_state_packet_without_an_observation_carries_no_graph() -> None:
    ep = _episode()
    pkt = host_views.state_packet(ep, "run/1", CATALOG, None, "schema")
    assert not pkt.HasField("graph") and pkt.action_mask == b""
    assert pkt.seed_states[1].blueprint_id == "low_rank_adapter" and pkt.seed_states[0].blueprint_id == ""
    assert pkt.host_parameter_count == ep.shape.base_params + ep.costs[1][2]
    validate_payload(pkt)


def test_command_names_the_run_epoch_and_blueprint() -> None:
    ep = _episode()
    cmd = host_views.command_for(ep, "run/1", CATALOG, np.array([OP_GERMINATE, 0, 1]), log_prob=-0.5)
    assert (cmd.training_run_id, cmd.epoch, cmd.log_prob) == ("run/1", 1, -0.5)
    assert cmd.seed_operation.blueprint_id == "wide_residual_mlp"
