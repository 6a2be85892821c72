"""Trace context helpers: the directly formatted ``traceparent`` is what the W3C propagator injects, and the
cached tracer follows a change of the process's tracer provider."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tamiyo.bus import observability
from tamiyo.bus.observability import context_from_traceparent, traceparent_of


def _w3c(span: trace.Span) -> str:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def test_traceparent_is_what_the_w3c_propagator_injects():
    tracer = TracerProvider().get_tracer("test")
    for _ in range(20):
        span = tracer.start_span("s")
        assert traceparent_of(span) == _w3c(span) != ""
        # and it parses back to the same span context
        back = trace.get_current_span(context_from_traceparent(traceparent_of(span))).get_span_context()
        assert (back.trace_id, back.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)
        span.end()


def test_a_span_without_a_valid_context_has_no_traceparent():
    assert traceparent_of(trace.INVALID_SPAN) == "" == _w3c(trace.INVALID_SPAN)


def test_the_cached_tracer_follows_the_tracer_provider(monkeypatch):
    first, second = TracerProvider(), TracerProvider()
    monkeypatch.setattr(observability, "_TRACER", None)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: first)
    a = observability.tracer()
    assert observability.tracer() is a
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: second)
    b = observability.tracer()
    assert b is not a and observability.tracer() is b
