"""The shim's observability, as a wasmCloud 1.x host's: `otel_config` for the provider's
HostData from the host's flags and environment, and a span around each component invocation
whose W3C `traceparent` rides on every wRPC call the invocation makes, so the provider's spans
join the component's trace.

The settings follow the host's: `--enable-observability` [WASMCLOUD_OBSV_ENABLED],
`--enable-traces` [WASMCLOUD_TRACING_ENABLED], `--enable-metrics` [WASMCLOUD_METRICS_ENABLED],
`--override-observability-endpoint` [OTEL_EXPORTER_OTLP_ENDPOINT], `--override-traces-endpoint`
[OTEL_EXPORTER_OTLP_TRACES_ENDPOINT], `--override-metrics-endpoint`
[OTEL_EXPORTER_OTLP_METRICS_ENDPOINT], `--observability-protocol` [WASMCLOUD_OBSV_PROTOCOL]
and `--trace-level` [WASMCLOUD_TRACE_LEVEL]. As a convenience an endpoint given without
`--enable-observability` turns it on.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from provider.observability.otel_settings import otel_settings

# flag dest → (environment variable, otel_config key)
SETTINGS = {
    "enable_observability": ("WASMCLOUD_OBSV_ENABLED", "enable_observability"),
    "enable_traces": ("WASMCLOUD_TRACING_ENABLED", "enable_traces"),
    "enable_metrics": ("WASMCLOUD_METRICS_ENABLED", "enable_metrics"),
    "observability_endpoint": ("OTEL_EXPORTER_OTLP_ENDPOINT", "observability_endpoint"),
    "traces_endpoint": ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "traces_endpoint"),
    "metrics_endpoint": ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "metrics_endpoint"),
    "observability_protocol": ("WASMCLOUD_OBSV_PROTOCOL", "protocol"),
    "trace_level": ("WASMCLOUD_TRACE_LEVEL", "trace_level"),
}
FLAGS = {
    "enable_observability": "--enable-observability",
    "enable_traces": "--enable-traces",
    "enable_metrics": "--enable-metrics",
    "observability_endpoint": "--override-observability-endpoint",
    "traces_endpoint": "--override-traces-endpoint",
    "metrics_endpoint": "--override-metrics-endpoint",
    "observability_protocol": "--observability-protocol",
    "trace_level": "--trace-level",
}
SWITCHES = ("enable_observability", "enable_traces", "enable_metrics")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    for dest, flag in FLAGS.items():
        env = SETTINGS[dest][0]
        if dest in SWITCHES:
            parser.add_argument(flag, dest=dest, action="store_true", default=None,
                                help=f"[{env}]")  # fmt: skip
        else:
            parser.add_argument(flag, dest=dest, default=None, help=f"[{env}]")


def otel_config(flags: Mapping[str, Any], environment: Mapping[str, str]) -> dict[str, Any]:
    """HostData's `otel_config` (sans-IO): a flag wins over its environment variable."""
    config: dict[str, Any] = {}
    for dest, (env, key) in SETTINGS.items():
        value = flags.get(dest)
        if value is None:
            value = environment.get(env)
        if value is None or value == "":
            continue
        if dest in SWITCHES:
            value = value if isinstance(value, bool) else value.strip().lower() in (
                "1", "true", "yes", "on"
            )  # fmt: skip
        elif dest == "observability_protocol":
            value = "Grpc" if str(value).strip().lower() == "grpc" else "Http"
        config[key] = value
    endpoints = ("observability_endpoint", "traces_endpoint", "metrics_endpoint")
    if "enable_observability" not in config:
        config["enable_observability"] = any(key in config for key in endpoints)
    return config


class InvocationTracer:
    """A span per component invocation, exported like the provider's (None-cheap when off)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.endpoint: str | None = None
        self._tracer: Any = None
        self._provider: Any = None
        settings = otel_settings(config, {})
        if not settings.traces:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from provider.observability.exporters import otlp_exporter

        self._provider = TracerProvider(resource=Resource.create({"service.name": "host-shim"}))
        self._provider.add_span_processor(BatchSpanProcessor(otlp_exporter(settings, "traces")))
        self._tracer = self._provider.get_tracer("host_shim")
        self.endpoint = settings.endpoints["traces"]

    @contextlib.contextmanager
    def invocation(self, component_id: str, function: str) -> Iterator[dict[str, str]]:
        """The headers the invocation's wRPC calls carry (its `traceparent`), inside its span;
        empty when traces are off."""
        if self._tracer is None:
            yield {}
            return
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        with self._tracer.start_as_current_span(
            f"{component_id}/{function}", attributes={"wasmcloud.component.id": component_id}
        ):
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers)
            yield headers

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.force_flush(5000)
            self._provider.shutdown()
