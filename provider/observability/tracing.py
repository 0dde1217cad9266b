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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from provider.observability.exporters import otlp_exporter
from provider.observability.otel_settings import SERVICE_NAME, OtelSettings

log = logging.getLogger(__name__)


def _sampler(settings: OtelSettings) -> Any:
    from opentelemetry.sdk.trace import sampling

    ratio = 1.0
    with contextlib.suppress(TypeError, ValueError):
        ratio = float(settings.sampler_arg) if settings.sampler_arg is not None else 1.0
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }.get(settings.sampler, sampling.ParentBased(sampling.ALWAYS_ON))


class Tracing:
    """The tracer, or None when traces are off; `shutdown` flushes what is queued."""

    def __init__(self, settings: OtelSettings) -> None:
        self.tracer: Any = None
        self._provider: Any = None
        if not settings.traces:
            return
        from opentelemetry.propagators.textmap import DefaultGetter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        endpoint = settings.endpoints["traces"]
        exporter = otlp_exporter(settings, "traces")
        # Resource.create adds OTEL_RESOURCE_ATTRIBUTES (the host passes OTEL_* through).
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": SERVICE_NAME}), sampler=_sampler(settings)
        )
        queue = settings.max_batch_queue_size or 2048
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter, max_queue_size=queue, max_export_batch_size=min(512, queue)
            )
        )
        self.tracer = self._provider.get_tracer("sqldb-postgres-provider")
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()
        log.info("traces exported", extra={"endpoint": endpoint, "protocol": settings.protocol})

    def parent_context(self, headers: Mapping[str, str]) -> Any:
        return self._propagator.extract(headers, getter=self._getter)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Export what is queued (within `timeout` s), then stop (idempotent)."""
        provider, self._provider = self._provider, None
        if provider is not None:
            with contextlib.suppress(Exception):
                provider.force_flush(int(timeout * 1000))
                provider.shutdown()


class CallTracer:
    """The wRPC server's observer: a SERVER span around each call's handler."""

    def __init__(self, tracing: Tracing) -> None:
        from opentelemetry import context, trace

        self._tracing = tracing
        self._tracer = tracing.tracer
        self._context = context
        self._trace = trace
        self._server = trace.SpanKind.SERVER

    def start(self, instance: str, function: str, headers: Mapping[str, str]) -> Any:
        span = self._tracer.start_span(
            f"{instance}/{function}",
            context=self._tracing.parent_context(headers),
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

    def end(self, handle: Any, results: Sequence[Any] | None, error: BaseException | None) -> None:
        span, token = handle
        from provider.wrpc.values import Err

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
    """The service's observer: a CLIENT span per database statement, events on the call."""

    def __init__(self, tracing: Tracing) -> None:
        from opentelemetry import trace

        self._tracer = tracing.tracer
        self._trace = trace
        self._client = trace.SpanKind.CLIENT

    @contextlib.contextmanager
    def statement(
        self, sql: str, operation: str, database: str, host: str, port: int
    ) -> Iterator[Any]:
        attributes = {
            "db.system.name": "postgresql",
            "db.namespace": database,
            "db.query.text": sql,  # never the parameters' values
            "db.operation.name": operation,
            "server.address": host,
            "server.port": port,
        }
        with self._tracer.start_as_current_span(
            f"{operation} {database}", kind=self._client, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                yield span
            except BaseException as exc:
                sqlstate = getattr(exc, "sqlstate", None)
                if sqlstate:
                    span.set_attribute("db.response.status_code", sqlstate)
                span.set_attribute("error.type", sqlstate or type(exc).__name__)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)[:200]))
                raise

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        """An event on the current span (the call's): a retry, a re-prepare."""
        self._trace.get_current_span().add_event(name, dict(attributes))


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
