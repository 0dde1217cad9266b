"""The unsampled-call fast path is pinned to OpenTelemetry's own reading of `traceparent`: it
skips the SDK only where the propagator finds a valid remote parent that was not sampled, and
for every well-formed version-00 header (the form hosts send) exactly there; anything else
(future versions, surrounding blanks) takes the general path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from provider.observability.tracing import CallTracer, parse_traceparent, sampled_off

HEX = "0123456789abcdef"


def parent_not_sampled(traceparent: str | None) -> bool:
    """What `CallTracer.start` decides for a call's header: skip the SDK or not."""
    return sampled_off(parse_traceparent(traceparent))


def otel_says_not_sampled(traceparent: str) -> bool:
    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return span_context.is_valid and not span_context.trace_flags.sampled


def hex_text(size: int) -> st.SearchStrategy[str]:
    return st.text(HEX, min_size=size, max_size=size)


well_formed = st.builds(
    lambda trace_id, span_id, flags: f"00-{trace_id}-{span_id}-{flags}",
    st.one_of(hex_text(32), st.just("0" * 32)),
    st.one_of(hex_text(16), st.just("0" * 16)),
    st.one_of(hex_text(2), st.sampled_from(["00", "01", "02", "03", "ff"])),
)
mangled = st.one_of(
    st.text(max_size=70),
    well_formed.map(str.upper),
    well_formed.map(lambda t: t[:-1]),
    well_formed.map(lambda t: t + "0"),
    well_formed.map(lambda t: "01" + t[2:]),
    well_formed.map(lambda t: t.replace("-", "_", 1)),
)


@given(well_formed)
def test_on_what_hosts_send_the_fast_path_agrees_with_the_propagator(traceparent: str) -> None:
    assert parent_not_sampled(traceparent) == otel_says_not_sampled(traceparent)


@given(mangled)
def test_it_never_skips_a_call_the_sdk_would_record(traceparent: str) -> None:
    if parent_not_sampled(traceparent):
        assert otel_says_not_sampled(traceparent)


def test_examples() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
    assert parent_not_sampled(parent + "-00") and parent_not_sampled(parent + "-02")
    assert not parent_not_sampled(parent + "-01") and not parent_not_sampled(None)
    assert not parent_not_sampled("00-" + "0" * 32 + "-00f067aa0ba902b7-00")  # invalid: root


tracestates = st.one_of(st.none(), st.just(""), st.just("vendor=1,other=x"), st.text(max_size=30))


@given(well_formed, tracestates)
def test_the_parsed_parent_is_the_context_the_propagator_extracts(
    traceparent: str, tracestate: str | None
) -> None:
    headers = {"traceparent": traceparent}
    if tracestate is not None:
        headers["tracestate"] = tracestate
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(headers))
    parsed = parse_traceparent(traceparent)
    if parsed is None:  # not a valid parent: the general path handles it
        assert not expected.get_span_context().is_valid
        return
    tracer = CallTracer.__new__(CallTracer)
    tracer._trace, tracer._trace_state = trace, TraceState
    ours = trace.get_current_span(tracer.remote_parent(parsed, tracestate)).get_span_context()
    theirs = expected.get_span_context()
    assert (ours.trace_id, ours.span_id, ours.is_remote, ours.trace_flags) == (
        theirs.trace_id,
        theirs.span_id,
        theirs.is_remote,
        theirs.trace_flags,
    )
    assert dict(ours.trace_state or {}) == dict(theirs.trace_state or {})
