"""What the provider exports over OTLP, started from the settings and flushed at shutdown."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from provider.observability.otel_settings import OtelSettings

log = logging.getLogger(__name__)


class Telemetry:
    """Traces and metrics as enabled; `flush` sends what is buffered within a deadline."""

    def __init__(self, settings: OtelSettings, registry: Any) -> None:
        from provider.observability.tracing import Tracing

        self.tracing: Tracing | None = None
        self.metrics: Any = None
        if settings.traces:
            try:
                self.tracing = Tracing(settings)
            except Exception as exc:  # a bad endpoint or CA must not keep us from serving
                log.error("traces not exported", extra={"error": str(exc)})
        if settings.metrics:
            from provider.observability.metric_export import MetricExport

            try:
                self.metrics = MetricExport(settings, registry)
            except Exception as exc:
                log.error("metrics not exported", extra={"error": str(exc)})

    def flush(self, timeout: float) -> None:
        """Spans queued and the last metrics out, the two side by side, within `timeout` s
        (the host SIGKILLs us once shutdown is answered)."""
        jobs = []
        if self.tracing is not None:
            jobs.append(threading.Thread(target=self.tracing.shutdown, args=(timeout,)))
        if self.metrics is not None:
            jobs.append(threading.Thread(target=self.metrics.shutdown, args=(timeout * 1000,)))
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.daemon = True
            job.start()
        for job in jobs:  # one deadline for both, not `timeout` each
            job.join(max(0.0, deadline - time.monotonic()))
        if any(job.is_alive() for job in jobs):  # a collector that hangs: stop waiting on it
            for signal in (self.tracing, self.metrics):
                if signal is not None:
                    signal.abandon()
