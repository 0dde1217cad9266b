"""Spans for every wRPC call and every database statement, exported over OTLP when asked.

Off (the default) nothing here is imported or called: the wRPC server and the service check one
attribute for None. On, each call gets a SERVER span whose parent comes from the call's W3C
`traceparent`/`tracestate` headers (the host puts them on every wRPC call), and each statement a
CLIENT span under it with the stable database conventions; retries and re-prepares are events
on the call's span. Log records written while a call is traced carry its trace and span ids.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from provider.common.redaction import SecretRedactor
from provider.observability.exporters import otlp_exporter
from provider.observability.otel_settings import SERVICE_NAME, OtelSettings, loggable
from provider.observability.query_text import error_text, query_text

log = logging.getLogger(__name__)


PARENT_BLIND_SAMPLERS = ("always_on", "always_off", "traceidratio")
# W3C allows a `tracestate` to be dropped past 512 characters.
MAX_TRACESTATE = 512


def _ratio(argument: str | None) -> float:
    """The sampler's ratio; a missing, unreadable or out-of-range one is 1.0 (with a warning:
    OpenTelemetry says bad sampler input is ignored, never fatal)."""
    if argument is None:
        return 1.0
    try:
        ratio = float(argument)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        log.warning("traces_sampler_arg must be a ratio in [0, 1]; using 1.0",
                    extra={"traces_sampler_arg": argument})  # fmt: skip
        return 1.0
    return ratio


def _sampler(settings: OtelSettings) -> Any:
    """Only the sampler asked for is built (a bad ratio must not break another sampler)."""
    from opentelemetry.sdk.trace import sampling

    name = settings.sampler
    if name == "always_on":
        return sampling.ALWAYS_ON
    if name == "always_off":
        return sampling.ALWAYS_OFF
    if name == "traceidratio":
        return sampling.TraceIdRatioBased(_ratio(settings.sampler_arg))
    if name == "parentbased_always_off":
        return sampling.ParentBased(sampling.ALWAYS_OFF)
    if name == "parentbased_traceidratio":
        return sampling.ParentBased(sampling.TraceIdRatioBased(_ratio(settings.sampler_arg)))
    return sampling.ParentBased(sampling.ALWAYS_ON)


class Tracing:
    """The tracer of a process whose traces are on; `shutdown` flushes what is queued."""

    def __init__(self, settings: OtelSettings, service_name: str = SERVICE_NAME) -> None:
        from opentelemetry.propagators.textmap import DefaultGetter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        endpoint = settings.endpoints["traces"]
        self._exporter = exporter = otlp_exporter(settings, "traces")
        # Resource.create adds OTEL_RESOURCE_ATTRIBUTES (the host passes OTEL_* through). No
        # exit hook: a collector that hangs must not hold the process (flush has a deadline).
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=_sampler(settings),
            shutdown_on_exit=False,
        )
        queue = settings.max_batch_queue_size or 2048
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter, max_queue_size=queue, max_export_batch_size=min(512, queue)
            )
        )
        self.tracer: Any = self._provider.get_tracer(service_name)
        # Every parent-based sampler (an unknown name means the default, parent-based too)
        # drops what a remote parent did not sample.
        self.follows_parent = settings.sampler not in PARENT_BLIND_SAMPLERS
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()
        # The API warns about every malformed traceparent/tracestate a caller sends: one line
        # per call, the caller's text in it. Export failures (the SDK's loggers) still show.
        logging.getLogger("opentelemetry.trace").setLevel(logging.ERROR)
        log.info("traces exported",
                 extra={"endpoint": loggable(endpoint), "protocol": settings.protocol})  # fmt: skip

    def parent_context(self, headers: Mapping[str, str]) -> Any:
        return self._propagator.extract(headers, getter=self._getter)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Export what is queued, then stop (idempotent). The SDK's flush may overrun
        `timeout` against a collector that hangs: run this on a thread and `abandon` it."""
        provider, self._provider = self._provider, None  # type: ignore[assignment]
        if provider is not None:
            with contextlib.suppress(Exception):
                provider.force_flush(int(timeout * 1000))
                provider.shutdown()

    def abandon(self) -> None:
        """Give up on an export still running: its retries stop waiting."""
        with contextlib.suppress(Exception):
            self._exporter.shutdown()


# W3C trace context, version 00: what the host sends on every wRPC call.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_NOT_SAMPLED_CALL: ContextVar[bool] = ContextVar("sqldb_postgres_not_sampled", default=False)
_NOT_TRACED = contextlib.nullcontext()


def parse_traceparent(traceparent: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid version-00 `traceparent` (what hosts
    send); None for anything else, which the propagator then reads (the general path)."""
    if traceparent is None:
        return None
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    trace_id, span_id, flags = (int(part, 16) for part in match.groups())
    return (trace_id, span_id, flags) if trace_id and span_id else None


def sampled_off(parsed: tuple[int, int, int] | None) -> bool:
    """True when a parsed `traceparent` names a valid remote parent whose sampled flag is off:
    a parent-based sampler records nothing under it, so the call need not touch the SDK."""
    return parsed is not None and not parsed[2] & 1


class CallTracer:
    """The wRPC server's observer: a SERVER span around each call's handler (nothing at all
    for a call whose parent was not sampled, when the sampler follows the parent)."""

    def __init__(self, tracing: Tracing) -> None:
        from opentelemetry import context, trace

        self._tracing = tracing
        self._tracer = tracing.tracer
        self._context = context
        self._trace = trace
        self._server = trace.SpanKind.SERVER
        self._follows_parent = tracing.follows_parent
        from opentelemetry.trace.span import TraceState

        self._trace_state = TraceState

    def start(self, instance: str, function: str, headers: Mapping[str, str]) -> Any:
        parsed = parse_traceparent(headers.get("traceparent"))
        if self._follows_parent and sampled_off(parsed):
            return None, _NOT_SAMPLED_CALL.set(True)
        if parsed is None:  # none, or not the usual form: the propagator reads it
            parent = self._tracing.parent_context(headers)
        else:
            parent = self.remote_parent(parsed, headers.get("tracestate"))
        span = self._tracer.start_span(
            f"{instance}/{function}",
            context=parent,
            kind=self._server,
            attributes={
                "rpc.system": "wrpc",
                "rpc.service": instance,
                "rpc.method": function,
                "wasmcloud.component.id": headers.get("source-id", ""),
                "wasmcloud.link.name": headers.get("link-name", "default"),
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def remote_parent(self, parsed: tuple[int, int, int], tracestate: str | None) -> Any:
        """The context the propagator's `extract` makes of a parsed `traceparent` (a test pins
        the two together), without its second parse of the header."""
        trace = self._trace
        trace_id, span_id, flags = parsed
        state = None
        if tracestate is not None and len(tracestate) <= MAX_TRACESTATE:
            state = self._trace_state.from_header([tracestate])
        context = trace.SpanContext(trace_id, span_id, True, trace.TraceFlags(flags), state)
        return trace.set_span_in_context(trace.NonRecordingSpan(context))

    def end(self, handle: Any, results: Sequence[Any] | None, error: BaseException | None) -> None:
        span, token = handle
        if span is None:
            _NOT_SAMPLED_CALL.reset(token)
            return
        from provider.wit.values import Err

        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", type(error).__name__)
        elif results and isinstance(results[0], Err):
            variant = getattr(results[0].value, "tag", "error")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, variant))
            span.set_attribute("error.type", variant)
        span.end()
        self._context.detach(token)


class StatementTracer:
    """The service's observer: a CLIENT span per database statement (child of the call's
    span, never made current: nothing runs under it), events on the call's span."""

    def __init__(self, tracing: Tracing, redactor: SecretRedactor) -> None:
        from opentelemetry import trace

        self._redactor = redactor
        self._tracer = tracing.tracer
        self._trace = trace
        self._client = trace.SpanKind.CLIENT

    def statement(
        self, sql: str, operation: str, database: str, host: str, port: int
    ) -> contextlib.AbstractContextManager[Any]:
        if _NOT_SAMPLED_CALL.get():
            return _NOT_TRACED
        attributes = {
            "db.system.name": "postgresql",
            "db.namespace": database,
            "db.operation.name": operation,
            "server.address": host,
            "server.port": port,
        }
        span = self._tracer.start_span(
            f"{operation} {database}" if operation else database,
            kind=self._client,
            attributes=attributes,
        )
        if span.is_recording():  # a span the sampler dropped reads no SQL
            # Never the parameters' values, nor the SQL's literals (a batch's ALTER ROLE ...
            # PASSWORD '...'), nor a known secret written into it.
            span.set_attribute("db.query.text", query_text(sql, self._redactor))
        return _StatementSpan(span, self._trace, self._redactor)

    def transaction(
        self, isolation: str, read_only: bool, database: str, host: str, port: int
    ) -> Any:
        """A span for an interactive transaction's whole life, a child of the call that began
        it; `transaction_ended` ends it. None when that call is not traced."""
        if _NOT_SAMPLED_CALL.get():
            return None
        span = self._tracer.start_span(
            f"transaction {database}",
            attributes={
                "db.system.name": "postgresql",
                "db.namespace": database,
                "server.address": host,
                "server.port": port,
                "sqldb_postgres.transaction.isolation": isolation,
                "sqldb_postgres.transaction.read_only": read_only,
            },
        )
        return span if span.is_recording() else None

    def transaction_ended(self, span: Any, outcome: str) -> None:
        """`outcome` as the metrics count it; anything but a commit or a rollback the component
        asked for (a timeout, a serialization failure, a lost connection) is an ERROR."""
        span.set_attribute("sqldb_postgres.transaction.outcome", outcome)
        if outcome not in ("committed", "rolled_back"):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome))
        span.end()

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """An event on the current span (the call's): a retry, a re-prepare."""
        self._trace.get_current_span().add_event(name, dict(attributes))


class _StatementSpan:
    """Ends a statement's span; a failure marks it ERROR with its SQLSTATE."""

    __slots__ = ("_redactor", "_span", "_trace")

    def __init__(self, span: Any, trace: Any, redactor: SecretRedactor) -> None:
        self._span, self._trace, self._redactor = span, trace, redactor

    def __enter__(self) -> Any:
        return self._span

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        span = self._span
        if exc is not None:
            sqlstate = getattr(exc, "sqlstate", None)
            if sqlstate:
                span.set_attribute("db.response.status_code", sqlstate)
            span.set_attribute("error.type", sqlstate or type(exc).__name__)
            status = self._trace.Status(
                self._trace.StatusCode.ERROR, error_text(exc, self._redactor)
            )
            span.set_status(status)
        span.end()


class TraceIds(logging.Filter):
    """Log records written inside a traced call carry `trace_id` and `span_id`."""

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry import trace

        self._trace = trace

    def filter(self, record: logging.LogRecord) -> bool:
        context = self._trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True
