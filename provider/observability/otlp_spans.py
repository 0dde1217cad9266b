"""Finished spans as an OTLP `ExportTraceServiceRequest`, in protobuf wire bytes (sans-IO).

Why not the exporter's own encoder: `tracing_bench` measured it at ~48 µs of CPU per span
(it builds a protobuf object per attribute, and the resource's again for every batch), a third
of what a sampled call costs. This writes the same message straight to bytes: the resource and
scope once per batch object, each span's fields in order. `tests/unit/test_otlp_spans.py` parses the
output with opentelemetry-proto and compares it with the library's encoding under hypothesis.
Anything this cannot encode raises `Unencodable`, and the caller uses the library instead.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from provider.common.bounded_tables import remember

_SMALL = [bytes([n]) for n in range(128)]
_DOUBLE = struct.Struct("<d").pack
_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_MASK64 = (1 << 64) - 1
_SPAN_FLAGS_HAS_IS_REMOTE, _SPAN_FLAGS_IS_REMOTE = 0x100, 0x200


class Unencodable(Exception):
    """A value of a type OTLP has no encoding for (the library logs and skips those)."""


def _varint(number: int) -> bytes:
    if number < 128:
        return _SMALL[number]
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message) with its one-byte `tag`."""
    return tag + _varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An `AnyValue` message's body."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise Unencodable("an integer beyond int64")
        return b"\x18" + _varint(value & _MASK64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", any_value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise Unencodable(f"no OTLP encoding for {type(value).__name__}")


def key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode()) + _field(b"\x12", any_value(value))


_SEEN_TEXT_PAIRS: dict[tuple[bytes, str, str], bytes] = {}  # the same attributes, span after span
_MAX_SEEN = 4096
MAX_REMEMBERED_VALUE = 512  # longer texts are encoded each time, never kept


def attributes(tag: bytes, items: Mapping[str, Any] | None) -> bytes:
    """Repeated `KeyValue` field `tag`."""
    if not items:
        return b""
    out = []
    seen = _SEEN_TEXT_PAIRS
    for key, value in items.items():
        if type(value) is str and len(value) <= MAX_REMEMBERED_VALUE:
            encoded = seen.get((tag, key, value))
            if encoded is None:
                encoded = remember(seen, (tag, key, value), _field(tag, key_value(key, value)),
                                   _MAX_SEEN)  # fmt: skip
            out.append(encoded)
        else:
            out.append(_field(tag, key_value(key, value)))
    return b"".join(out)


def _resource(resource: Any) -> bytes:
    return attributes(b"\x0a", resource.attributes)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    out = _field(b"\x0a", scope.name.encode()) if scope.name else b""
    if scope.version:
        out += _field(b"\x12", scope.version.encode())
    return out + attributes(b"\x1a", scope.attributes)


def _flags(parent: Any) -> bytes:
    flags = _SPAN_FLAGS_HAS_IS_REMOTE
    if parent is not None and parent.is_remote:
        flags |= _SPAN_FLAGS_IS_REMOTE
    return b"\x85\x01" + _FIXED32(flags)  # field 16, fixed32


def _status(status: Any) -> bytes:
    out = b""
    if status.description:
        out += _field(b"\x12", status.description.encode())
    code = status.status_code.value
    if code:
        out += b"\x18" + _varint(code)
    return out


def _event(event: Any) -> bytes:
    out = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
    if event.name:
        out += _field(b"\x12", event.name.encode())
    out += attributes(b"\x1a", event.attributes)
    if event.dropped_attributes:
        out += b"\x20" + _varint(event.dropped_attributes)
    return out


def _link(link: Any) -> bytes:
    context = link.context
    out = _field(b"\x0a", context.trace_id.to_bytes(16, "big"))
    out += _field(b"\x12", context.span_id.to_bytes(8, "big"))
    out += attributes(b"\x22", link.attributes)
    if link.dropped_attributes:
        out += b"\x28" + _varint(link.dropped_attributes)
    flags = _SPAN_FLAGS_HAS_IS_REMOTE | (_SPAN_FLAGS_IS_REMOTE if context.is_remote else 0)
    return out + b"\x35" + _FIXED32(flags)


def span(sdk_span: Any) -> bytes:
    """One `Span` message's body, fields in number order."""
    context = sdk_span.get_span_context()
    out = [
        _field(b"\x0a", context.trace_id.to_bytes(16, "big")),
        _field(b"\x12", context.span_id.to_bytes(8, "big")),
    ]
    trace_state = context.trace_state
    if trace_state:
        out.append(_field(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items()).encode()))
    parent = sdk_span.parent
    if parent is not None:
        out.append(_field(b"\x22", parent.span_id.to_bytes(8, "big")))
    if sdk_span.name:
        out.append(_field(b"\x2a", sdk_span.name.encode()))
    out.append(b"\x30" + _varint(sdk_span.kind.value + 1))  # SPAN_KIND_INTERNAL is 1
    if sdk_span.start_time:
        out.append(b"\x39" + _FIXED64(sdk_span.start_time))
    if sdk_span.end_time:
        out.append(b"\x41" + _FIXED64(sdk_span.end_time))
    out.append(attributes(b"\x4a", sdk_span.attributes))
    if sdk_span.dropped_attributes:
        out.append(b"\x50" + _varint(sdk_span.dropped_attributes))
    out += [_field(b"\x5a", _event(e)) for e in sdk_span.events]
    if sdk_span.dropped_events:
        out.append(b"\x60" + _varint(sdk_span.dropped_events))
    out += [_field(b"\x6a", _link(link)) for link in sdk_span.links]
    if sdk_span.dropped_links:
        out.append(b"\x70" + _varint(sdk_span.dropped_links))
    out.append(_field(b"\x7a", _status(sdk_span.status)))
    out.append(_flags(parent))
    return b"".join(out)


def export_request(spans: Sequence[Any]) -> bytes:
    """The request for `spans`, grouped by resource, then by instrumentation scope."""
    # Grouped by equal resources, as the library does, but found by identity first: hashing a
    # Resource serialises its attributes to JSON, and every span of a provider shares one.
    groups: list[tuple[Any, dict[Any, list[bytes]]]] = []
    by_identity: dict[int, dict[Any, list[bytes]]] = {}
    for sdk_span in spans:
        resource = sdk_span.resource
        scopes = by_identity.get(id(resource))
        if scopes is None:
            scopes = next((found for known, found in groups if known == resource), None)
            if scopes is None:
                scopes = {}
                groups.append((resource, scopes))
            by_identity[id(resource)] = scopes
        scopes.setdefault(sdk_span.instrumentation_scope or None, []).append(
            _field(b"\x12", span(sdk_span))
        )
    out = []
    for resource, scopes in groups:
        body = [_field(b"\x0a", _resource(resource))]
        for scope, encoded in scopes.items():
            scope_body = _field(b"\x0a", _scope(scope)) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scope_body += _field(b"\x1a", scope.schema_url.encode())
            body.append(_field(b"\x12", scope_body))
        if resource.schema_url:
            body.append(_field(b"\x1a", resource.schema_url.encode()))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)
