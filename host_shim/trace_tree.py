"""Received spans as an indented tree per trace, for the demo's `--show-traces` (sans-IO)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode


def _line(span: Any, service: str, depth: int) -> str:
    milliseconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    text = f"{'  ' * depth}{span.name}  [{service}] {milliseconds:.2f} ms"
    if span.status.code == STATUS_ERROR:
        text += f"  ERROR {span.status.message[:60]}"
    for attribute in span.attributes:
        if attribute.key == "db.query.text":
            query = " ".join(attribute.value.string_value.split())
            text += f"  {query[:60]}"
    return text


def render(trace_id: str, spans: Sequence[Any], services: Mapping[bytes, str],
           children_shown: int = 8) -> str:  # fmt: skip
    """The spans of `trace_id` (hex), roots first, children by start time."""
    mine = [s for s in spans if s.trace_id.hex() == trace_id]
    ids = {s.span_id for s in mine}
    children: dict[bytes, list[Any]] = {}
    for span in sorted(mine, key=lambda s: s.start_time_unix_nano):
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else b"", []).append(
            span
        )
    lines = [f"trace {trace_id}: {len(mine)} spans"]

    def walk(parent: bytes, depth: int) -> None:
        under = children.get(parent, [])
        for number, span in enumerate(under):
            if number == children_shown and len(under) > children_shown + 1:
                lines.append(f"{'  ' * depth}... {len(under) - children_shown} more")
                return
            lines.append(_line(span, services.get(span.span_id, "?"), depth))
            walk(span.span_id, depth + 1)

    walk(b"", 1)
    return "\n".join(lines)
