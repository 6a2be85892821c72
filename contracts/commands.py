"""Joint host actions (op, slot, blueprint) as Leyline `AdaptationCommand`s."""

from __future__ import annotations

import time

import numpy as np

from tamiyo.contracts.errors import InvalidFieldError
from tamiyo.contracts.host_schema import (
    NUM_OPS,
    OP_ADVANCE,
    OP_CULL,
    OP_GERMINATE,
    OP_LR_DOWN,
    OP_LR_UP,
    OP_WAIT,
    OPS,
)
from tamiyo.contracts.proto import leyline_pb2 as pb

_SEED_OPS = {
    OP_WAIT: pb.SEED_OP_WAIT,
    OP_GERMINATE: pb.SEED_OP_GERMINATE,
    OP_ADVANCE: pb.SEED_OP_ADVANCE,
    OP_CULL: pb.SEED_OP_CULL,
}


def command_from_action(
    action: np.ndarray | tuple[int, int, int],
    *,
    run_id: str,
    epoch: int,
    blueprint_ids: tuple[str, ...] | list[str],
    log_prob: float = 0.0,
    policy_version: int = 0,
    issued_at_ns: int | None = None,
) -> pb.AdaptationCommand:
    """The `AdaptationCommand` for a joint action (op, slot, blueprint): what an env reports for its
    own action and what serving answers to a state packet, from the same code."""
    op, slot, bp = (int(x) for x in np.asarray(action).reshape(-1)[:3])
    if not 0 <= op < NUM_OPS:
        raise InvalidFieldError(f"op {op} out of range")
    cmd = pb.AdaptationCommand(
        command_id=f"{run_id}/{epoch}",
        training_run_id=run_id,
        policy_version=max(int(policy_version), 0),
        issued_at_ns=time.time_ns() if issued_at_ns is None else issued_at_ns,
        log_prob=float(log_prob),
        reason=OPS[op],
        epoch=int(epoch),
    )
    if op in (OP_LR_UP, OP_LR_DOWN):
        cmd.optimizer_adjustment.lr_multiplier = 2.0 if op == OP_LR_UP else 0.5
    else:
        cmd.seed_operation.op = _SEED_OPS[op]
        if op != OP_WAIT:
            cmd.seed_operation.slot_index = slot
        if op == OP_GERMINATE:
            cmd.seed_operation.blueprint_id = blueprint_ids[bp]
    return cmd
