"""Telemetry as TensorBoard scalars: the one mapping `tamiyo train`, `tamiyo learner` and `tamiyo actor` share.

A `TelemetryPacket` becomes one scalar per metric, tagged ``<source>/<metric>`` with the packet's
source as the services publish it: ``learner/loss``, ``learner/rho_mean``,
``actor/actor-0/episode_return_mean``, ``replay/replay-0/buffer_size``.  A metric with labels of its
own adds their values: ``replay/replay-0/deadlettered_by_reason/MalformedRecordError``.  (The
learner's ``algo`` label is on every learner metric and is left out of its tags.)

The step of every scalar is env frames (`telemetry_step`): in `tamiyo train` the run's frames when the
packet is read (every actor's env steps so far, restarts included), so that the learner's losses, the
actors' returns and the replay's size share one x-axis (the learner updates more often than the actors
report, so a few learner points can share a step; ``learner/updates`` counts them).  A standalone
service knows only its own count, the packet's ``env_steps``: `tamiyo actor` its env steps, `tamiyo
learner` the frames it has trained on (a frame the replay samples again counts again).  The wall time
of each point is the packet's timestamp.

`TensorBoardSink` writes them with tensorboard's own `EventFileWriter`, one event per packet (what
`torch.utils.tensorboard.SummaryWriter.add_scalar` writes, without importing torch: ~0.4 s instead of
~4.5 s of CPU at every `tamiyo train` start), imported only when a sink is made: a service without
``--tensorboard`` never imports tensorboard.  Give each process a
directory of its own (TensorBoard reads the event files of one directory one after the other, so two
writers at once in the same one lose points); ``tensorboard --logdir runs/`` finds them all.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tamiyo.cli.extras import MissingExtraError
from tamiyo.contracts.codec import decode_envelope
from tamiyo.contracts.errors import LeylineError
from tamiyo.contracts.proto import leyline_pb2 as pb

if TYPE_CHECKING:
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

__all__ = ["TensorBoardSink", "packet_metrics", "telemetry_scalars", "telemetry_step", "tensorboard_sink"]

COMMON_LABELS = frozenset({"algo"})  # labels every metric of a source carries: not part of the tag
FLUSH_SECS = 5  # a live `tensorboard` sees new points within seconds


def _own_labels(metric: pb.MetricPoint) -> list[str]:
    return [metric.labels[k] for k in sorted(metric.labels) if k not in COMMON_LABELS]


def packet_metrics(packet: pb.TelemetryPacket) -> dict[str, float]:
    """The packet's plain metrics by name (no labels of their own): what a row of metrics.jsonl carries."""
    return {m.name: m.value for m in packet.metrics if not _own_labels(m)}


def telemetry_scalars(packet: pb.TelemetryPacket) -> dict[str, float]:
    """TensorBoard tag -> value for every metric of ``packet`` (the tag scheme is in the module docstring)."""
    return {"/".join([packet.source, m.name, *_own_labels(m)]): m.value for m in packet.metrics}


def telemetry_step(packet: pb.TelemetryPacket, run_frames: int | None = None) -> int:
    """The env-frame step of ``packet``'s scalars: ``run_frames`` when known, else the packet's ``env_steps`` (0
    without)."""
    if run_frames is not None:
        return int(run_frames)
    return int(packet_metrics(packet).get("env_steps", 0.0))


class TensorBoardSink:
    """Writes telemetry packets (or their published envelopes: call it with the bytes) as scalars under ``log_dir``."""

    def __init__(self, log_dir: str | Path, flush_secs: int = FLUSH_SECS) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # lazy: only where asked for

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer: EventFileWriter = EventFileWriter(str(self.log_dir), flush_secs=flush_secs)
        self.points = 0

    def write(self, packet: pb.TelemetryPacket, run_frames: int | None = None) -> None:
        self.write_scalars(telemetry_scalars(packet), telemetry_step(packet, run_frames), packet.timestamp_ns)

    def write_scalars(self, scalars: Mapping[str, float], step: int, timestamp_ns: int | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        if not scalars:
            return
        values = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()]
        walltime = timestamp_ns / 1e9 if timestamp_ns else time.time()
        self.writer.add_event(Event(wall_time=walltime, step=int(step), summary=Summary(value=values)))
        self.points += len(scalars)

    def __call__(self, value: bytes) -> None:
        """A telemetry envelope exactly as the service publishes it (one that does not decode is skipped)."""
        try:
            packet = decode_envelope(value, expect=pb.TelemetryPacket).payload
        except LeylineError:
            return
        self.write(packet)

    def close(self) -> None:
        """Flush and close the event file (again: nothing)."""
        self.writer.close()


@contextlib.contextmanager
def tensorboard_sink(log_dir: str | Path | None) -> Iterator[TensorBoardSink | None]:
    """A sink writing to ``log_dir``, closed on the way out (None without a directory: nothing is imported).
    Without the tensorboard package (the ``train`` extra): MissingExtraError, one line that says what to install."""
    if log_dir is None:
        yield None
        return
    if importlib.util.find_spec("tensorboard") is None:
        raise MissingExtraError("--tensorboard needs tensorboard: pip install 'tamiyo[train]' (or 'tamiyo[all]')")
    sink = TensorBoardSink(log_dir)
    try:
        yield sink
    finally:
        sink.close()
