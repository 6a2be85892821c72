"""Read-only views of a host-env episode: the Leyline messages and the plain-dict ``info``.

``state_packet`` is what a real training run would publish each epoch (and what
serving answers); ``command_for`` the `AdaptationCommand` an action stands for;
``env_info`` the plain-Python state the baseline controllers read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tamiyo.contracts.codec import SCHEMA_VERSION
from tamiyo.contracts.commands import command_from_action
from tamiyo.contracts.packing import graphs_to_proto, pack_mask
from tamiyo.contracts.proto import leyline_pb2 as pb
from tamiyo.producers.blueprints import Blueprint
from tamiyo.producers.env_api import Observation
from tamiyo.producers.host_backend import HostConfig
from tamiyo.producers.host_episode import Episode


def env_info(ep: Episode, config: HostConfig, blueprints: Sequence[Blueprint]) -> dict[str, Any]:
    """Plain-Python view of the current state (what the baseline controllers read)."""
    st = ep.stats
    return {
        "epoch": ep.epoch,
        "epoch_budget": config.epoch_budget,
        "val_acc": st.val_acc,
        "val_loss": st.val_loss,
        "train_loss": st.train_loss,
        "prev_val_acc": ep.prev_val_acc,
        "initial_acc": ep.initial_acc,
        "lr": ep.lr,
        "lr_step": ep.lr_step,
        "lr_steps": config.lr_steps,
        "plateau": ep.plateau,
        "added_params": ep.added_params(),
        "base_params": ep.shape.base_params,
        "budget_left": ep.budget_left(),
        "rent_total": ep.rent_total,
        "num_slots": len(ep.slots),
        "num_blueprints": len(blueprints),
        "blueprint_ids": [b.blueprint_id for b in blueprints],
        "blueprint_costs": [list(row) for row in ep.costs],  # [slot][blueprint]
        "slots": [
            {
                "stage": s.stage,
                "blueprint": s.blueprint,
                "alpha": s.alpha,
                "epochs_in_stage": s.epochs_in_stage,
                "acc_delta": (st.val_acc - s.acc_at_germination) if s.blueprint >= 0 else 0.0,
                "blend_gain": float(st.seed_blend_gain[i]),
                "pressure": float(st.slot_pressure[i]),
            }
            for i, s in enumerate(ep.slots)
        ],
    }


def state_packet(
    ep: Episode,
    run_id: str,
    blueprints: Sequence[Blueprint],
    observation: Observation | None,
    schema_name: str,
) -> pb.SystemStatePacket:
    """The Leyline `SystemStatePacket` of the current epoch; with the graph and mask of
    ``observation`` when one is given."""
    st = ep.stats
    pkt = pb.SystemStatePacket(
        version=SCHEMA_VERSION,
        current_epoch=ep.epoch,
        validation_accuracy=st.val_acc,
        validation_loss=st.val_loss,
        train_loss=st.train_loss,
        timestamp_ns=time.time_ns(),
        training_run_id=run_id,
        host_parameter_count=ep.shape.base_params + ep.added_params(),
        hardware_context=pb.HardwareContext(device_type="cpu", device_count=1),
    )
    pkt.training_metrics.update(
        {
            "loss_variance": st.loss_variance,
            "gradient_norm": st.grad_norm,
            "learning_rate": ep.lr,
            "plateau_epochs": float(ep.plateau),
            "rent_total": ep.rent_total,
        }
    )
    for i, s in enumerate(ep.slots):
        pkt.seed_states.add(
            slot_index=i,
            stage=s.stage,
            blueprint_id=blueprints[s.blueprint].blueprint_id if s.blueprint >= 0 else "",
            alpha=s.alpha,
            epochs_in_stage=s.epochs_in_stage,
            gradient_norm=float(st.seed_grad_rms[i]),
            parameter_count=s.params,
            accuracy_delta=(st.val_acc - s.acc_at_germination) if s.blueprint >= 0 else 0.0,
        )
    if observation is not None:
        pkt.graph.CopyFrom(graphs_to_proto(observation.graph, schema_name))
        pkt.action_mask = pack_mask(observation.action_mask)
    return pkt


def command_for(
    ep: Episode,
    run_id: str,
    blueprints: Sequence[Blueprint],
    action: np.ndarray,
    log_prob: float = 0.0,
    policy_version: int = 0,
) -> pb.AdaptationCommand:
    """The `AdaptationCommand` that ``action`` stands for at the current epoch."""
    return command_from_action(
        action,
        run_id=run_id,
        epoch=ep.epoch,
        blueprint_ids=[b.blueprint_id for b in blueprints],
        log_prob=log_prob,
        policy_version=policy_version,
    )
