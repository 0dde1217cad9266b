"""The compact span encoder against the library's: for any spans the SDK can make, parsing our
bytes with opentelemetry-proto gives exactly the message the OTLP exporters' encoder builds."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from provider.observability.exporters import _grpc_span_exporter, _http_span_exporter
from provider.observability.otlp_spans import Unencodable, any_value, export_request

texts = st.text(max_size=40)
int64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
floats = st.floats(allow_nan=False)
scalars = st.one_of(texts, int64, floats, st.booleans())
values = st.one_of(
    scalars,
    st.lists(texts, max_size=4).map(tuple),
    st.lists(int64, max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4).map(tuple),
)
attribute_maps = st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=6)
kinds = st.sampled_from(list(SpanKind))
statuses = st.one_of(
    st.just(None),
    st.builds(Status, st.just(StatusCode.ERROR), texts),
    st.just(Status(StatusCode.OK)),
)
span_contexts = st.builds(
    lambda trace_id, span_id, remote, state: SpanContext(
        trace_id, span_id, remote, TraceFlags(1), TraceState(state)
    ),
    st.integers(1, (1 << 128) - 1),
    st.integers(1, (1 << 64) - 1),
    st.booleans(),
    st.lists(
        st.tuples(st.sampled_from(["a", "vendor", "k9"]), st.sampled_from(["1", "x"])),
        max_size=2,
        unique_by=lambda kv: kv[0],
    ),
)
span_plans = st.fixed_dictionaries({
    "name": texts, "kind": kinds, "attributes": attribute_maps, "status": statuses,
    "parent": st.one_of(st.none(), span_contexts),
    "events": st.lists(st.tuples(texts, attribute_maps), max_size=3),
    "links": st.lists(st.tuples(span_contexts, attribute_maps), max_size=2),
})  # fmt: skip


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[Any] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


TINY_LIMITS = SpanLimits(max_attributes=2, max_events=1, max_links=1, max_event_attributes=1,
                         max_link_attributes=1, max_attribute_length=3)  # fmt: skip


def made(plans: list[dict[str, Any]], resource: Resource, limits: Any = None) -> list[Any]:
    kept = Keep()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracers = [provider.get_tracer("one"), provider.get_tracer("two", "1.2", "https://s")]
    for number, plan in enumerate(plans):
        parent = plan["parent"]
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else None
        span = tracers[number % 2].start_span(
            plan["name"], context=context, kind=plan["kind"], attributes=plan["attributes"],
            links=[Link(c, a) for c, a in plan["links"]],
        )  # fmt: skip
        for name, attributes in plan["events"]:
            span.add_event(name, attributes)
        if plan["status"] is not None:
            span.set_status(plan["status"])
        span.end()
    return kept.spans


@settings(max_examples=150, deadline=None)
@given(st.lists(span_plans, min_size=1, max_size=6), attribute_maps)
def test_our_bytes_parse_to_the_librarys_message(plans: list[dict[str, Any]],
                                                 resource: dict[str, Any]) -> None:  # fmt: skip
    spans = made(plans, Resource.create({"service.name": "x", **resource}))
    ours = ExportTraceServiceRequest.FromString(export_request(spans))
    assert ours == encode_spans(spans)


@settings(max_examples=60, deadline=None)
@given(st.lists(span_plans, min_size=1, max_size=4))
def test_spans_cut_at_their_limits_encode_their_dropped_counts(
    plans: list[dict[str, Any]],
) -> None:
    spans = made(plans, Resource({"service.name": "x"}), TINY_LIMITS)
    ours = ExportTraceServiceRequest.FromString(export_request(spans))
    assert ours == encode_spans(spans)


def test_spans_of_two_equal_resources_are_grouped_like_the_librarys() -> None:
    plans = [{"name": "a", "kind": SpanKind.SERVER, "attributes": {}, "status": None,
              "parent": None, "events": [], "links": []}]  # fmt: skip
    spans = made(plans, Resource({"k": "v"})) + made(plans, Resource({"k": "v"}))
    ours = ExportTraceServiceRequest.FromString(export_request(spans))
    assert ours == encode_spans(spans) and len(ours.resource_spans) == 1


def test_what_otlp_cannot_hold_is_refused_not_guessed() -> None:
    for value in (object(), 1 << 64):
        try:
            any_value(value)
        except Unencodable:
            continue
        raise AssertionError(f"{value!r} was encoded")
    assert any_value(math.inf) == b"\x21" + b"\x00\x00\x00\x00\x00\x00\xf0\x7f"


def test_the_exporters_still_have_what_the_compact_path_uses() -> None:
    """A library upgrade that renames these would silently take the slow path (or lose the
    request size bound): fail here instead."""
    exporter = _http_span_exporter()(endpoint="http://127.0.0.1:9/v1/traces")
    assert callable(exporter._client.export) and exporter._max_request_size > 0
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    assert callable(OTLPSpanExporter._translate_data)
    grpc_exporter = _grpc_span_exporter()(endpoint="http://127.0.0.1:9", insecure=True)
    spans = made([{"name": "a", "kind": SpanKind.SERVER, "attributes": {"k": 1}, "status": None,
                   "parent": None, "events": [], "links": []}], Resource({}))  # fmt: skip
    assert grpc_exporter._translate_data(spans) == encode_spans(spans)
