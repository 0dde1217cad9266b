"""The provider's metrics pushed over OTLP every interval, read from the Prometheus registry.

No OpenTelemetry instrument is touched on the call path: the numbers are the ones the
Prometheus endpoint shows, collected and translated (`metric_translation`) on this module's own
thread every `OTEL_METRIC_EXPORT_INTERVAL` ms (60 s by default, as the SDK's reader), and once
more when the provider shuts down so the last counts are not lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from provider.observability.exporters import otlp_exporter
from provider.observability.otel_settings import SERVICE_NAME, OtelSettings, loggable

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 60_000
DEFAULT_TIMEOUT_MS = 30_000


def _milliseconds(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class MetricExport:
    """Exports `registry` to the settings' metrics endpoint until `shutdown`."""

    def __init__(self, settings: OtelSettings, registry: Any) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self._registry = registry
        self._exporter = otlp_exporter(settings, "metrics")
        self._resource = Resource.create({"service.name": SERVICE_NAME})
        self._scope = InstrumentationScope("sqldb-postgres-provider")
        self._interval = _milliseconds("OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_INTERVAL_MS) / 1000
        self._timeout_ms = _milliseconds("OTEL_METRIC_EXPORT_TIMEOUT", DEFAULT_TIMEOUT_MS)
        self._start_ns = time.time_ns()
        self._stop = threading.Event()
        self._exporting = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="otlp-metrics", daemon=True)
        self._thread.start()
        log.info(
            "metrics exported",
            extra={"endpoint": loggable(settings.endpoints["metrics"]),
                   "protocol": settings.protocol,
                   "interval_s": self._interval},
        )  # fmt: skip

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.export_now(self._timeout_ms)

    def export_now(self, timeout_ms: float) -> bool:
        """Collect and send once; False when the export failed (it is logged)."""
        from opentelemetry.sdk.metrics.export import (
            MetricExportResult,
            MetricsData,
            ResourceMetrics,
            ScopeMetrics,
        )

        from provider.observability.metric_translation import translate

        if not self._exporting.acquire(timeout=timeout_ms / 1000):
            return False  # the periodic export still runs (a slow collector): not twice
        try:
            try:
                metrics = translate(self._registry.collect(), self._start_ns, time.time_ns())
                data = MetricsData(resource_metrics=[ResourceMetrics(
                    resource=self._resource, schema_url="",
                    scope_metrics=[ScopeMetrics(scope=self._scope, metrics=metrics,
                                                schema_url="")],
                )])  # fmt: skip
                result = self._exporter.export(data, timeout_millis=timeout_ms)
            except Exception as exc:  # a collector down must never reach the caller
                log.warning("metrics export failed", extra={"error": str(exc)})
                return False
        finally:
            self._exporting.release()
        return bool(result == MetricExportResult.SUCCESS)

    def abandon(self) -> None:
        """Give up on an export still running: its retries stop waiting."""
        with contextlib.suppress(Exception):
            self._exporter.shutdown()

    def shutdown(self, timeout_ms: float = 2000) -> None:
        """Send the last numbers (within `timeout_ms`) and stop."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.export_now(timeout_ms)
        self.abandon()  # done with it
