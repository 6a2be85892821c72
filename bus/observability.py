"""OpenTelemetry for the services: providers from the standard ``OTEL_*`` variables, W3C trace
context carried in Kafka record headers, and the metric instruments every service records.

Exporters (read once, when a service starts):

- ``OTEL_SDK_DISABLED=true``: nothing is recorded.
- ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``otlp``, ``console`` or ``none``.  When
  unset, ``otlp`` if ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its ``_TRACES_``/``_METRICS_`` variant)
  is set, otherwise ``none``.  OTLP needs ``pip install 'tamiyo[otlp]'``; endpoint, headers and
  protocol come from the usual ``OTEL_EXPORTER_OTLP_*`` variables.
- ``OTEL_SERVICE_NAME`` overrides the service name (default ``tamiyo-<service>``).

A trajectory's journey is one trace: ``actor.publish`` → ``replay.insert`` (child, via the
record's ``traceparent`` header) → ``replay.batch_item`` (child, when the trajectory is put in a
batch; its context travels in ``SampledItem.trace_parent``) → ``learner.item`` (child, when the
learner trains on it).  Each batch is a trace of its own, ``replay.publish_batch`` →
``learner.update``, linked to the trajectories it carries.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span

MAX_HEADER_BYTES = 512  # a traceparent is 55 bytes; anything much larger is not ours


def _exporter_choice(signal: str) -> str:
    explicit = os.environ.get(f"OTEL_{signal}_EXPORTER")
    if explicit:
        return explicit.split(",")[0].strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    return "otlp" if endpoint else "none"


def setup_observability(service: str) -> None:
    """Install tracer and meter providers for this process as the environment asks."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"tamiyo-{service}")})
    tracer_provider = TracerProvider(resource=resource)
    traces = _exporter_choice("TRACES")
    if traces == "console":
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif traces == "otlp":
        tracer_provider.add_span_processor(BatchSpanProcessor(_otlp("trace")))
    trace.set_tracer_provider(tracer_provider)
    readers = []
    metrics_choice = _exporter_choice("METRICS")
    if metrics_choice == "console":
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    elif metrics_choice == "otlp":
        readers.append(PeriodicExportingMetricReader(_otlp("metrics")))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def _otlp(kind: str) -> Any:  # an OTLP span or metric exporter (optional package)
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    try:
        if protocol == "grpc":
            if kind == "trace":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        elif kind == "trace":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as err:
        raise SystemExit(
            f"OTLP export was requested but the exporter is not installed: pip install 'tamiyo[otlp]' ({err})"
        ) from None
    return OTLPSpanExporter() if kind == "trace" else OTLPMetricExporter()


# ---------------------------------------------------------------- trace context over Kafka


_TRACER: tuple[trace.TracerProvider, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """The process's tracer, looked up once per tracer provider: ``trace.get_tracer`` builds and compares an
    instrumentation scope on every call, which a replay paid for every trajectory (~3% of its CPU, py-spy)."""
    global _TRACER
    provider = trace.get_tracer_provider()
    if _TRACER is None or _TRACER[0] is not provider:
        _TRACER = (provider, provider.get_tracer("tamiyo"))
    return _TRACER[1]


def headers_for(span: Span | None = None) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying the W3C trace context of ``span`` (default: the current one)."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    propagate.inject(carrier, context=ctx)
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> Context:
    """The trace context a record carries; headers off the wire are size-checked, then parsed by
    the W3C propagator, which ignores anything malformed (a bad header never fails a record)."""
    carrier: dict[str, str] = {}
    for key, value in headers or ():
        if value is not None and len(value) <= MAX_HEADER_BYTES:
            carrier[str(key).lower()] = value.decode("latin-1")
    return propagate.extract(carrier)


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` of ``span`` ("" for a span that is not recording a valid context): what the
    W3C propagator would inject, formatted directly (the propagator API built a carrier dict per call)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def context_from_traceparent(traceparent: str) -> Context:
    if not traceparent or len(traceparent) > MAX_HEADER_BYTES:
        return Context()
    return propagate.extract({"traceparent": traceparent})


def links_to(traceparents: Iterable[str]) -> list[Link]:
    links = []
    for tp in traceparents:
        span_context = trace.get_current_span(context_from_traceparent(tp)).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return links


# ---------------------------------------------------------------- metrics


class Instruments:
    """The metric instruments of the pipeline (created on the global meter, bound when a provider is set)."""

    def __init__(self) -> None:
        meter = metrics.get_meter("tamiyo")
        self.frames = meter.create_counter("tamiyo.frames", unit="{step}", description="environment steps taken")
        self.records_in = meter.create_counter("tamiyo.records.in", unit="{record}", description="records consumed")
        self.records_out = meter.create_counter("tamiyo.records.out", unit="{record}", description="records produced")
        self.deadlettered = meter.create_counter(
            "tamiyo.deadlettered", unit="{record}", description="records sent to deadletter, by reason"
        )
        self.decode_ms = meter.create_histogram("tamiyo.codec.decode.duration", unit="ms")
        self.encode_ms = meter.create_histogram("tamiyo.codec.encode.duration", unit="ms")
        self.batch_latency_ms = meter.create_histogram(
            "tamiyo.batch.latency", unit="ms", description="batch creation at the replay to its use by the learner"
        )
        self.policy_lag = meter.create_histogram(
            "tamiyo.policy.lag", unit="{version}", description="learner version minus behaviour version"
        )
        # A gauge, not a histogram: losses can be negative (policy-gradient and entropy terms).
        self.learner_loss = meter.create_gauge("tamiyo.learner.loss", description="latest learner losses, by name")
        self.serve_latency_ms = meter.create_histogram(
            "tamiyo.serve.decision.duration", unit="ms", description="state packet decode -> GNN -> command encode"
        )
        self.serve_decisions = meter.create_counter("tamiyo.serve.decisions", unit="{command}")


@cache
def instruments() -> Instruments:
    return Instruments()
