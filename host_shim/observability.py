"""The shim's observability, as a wasmCloud 1.x host's: `otel_config` for the provider's
HostData from the host's flags and environment, and a span around each component invocation
whose W3C `traceparent` rides on every wRPC call the invocation makes, so the provider's spans
join the component's trace.

The flags and variables are the `wasmcloud` host's own: `--enable-observability`
[WASMCLOUD_OBSERVABILITY_ENABLED], `--enable-traces` / `--enable-metrics` / `--enable-logs`
[WASMCLOUD_TRACES_ENABLED, WASMCLOUD_METRICS_ENABLED, WASMCLOUD_LOGS_ENABLED],
`--override-observability-endpoint` [OTEL_EXPORTER_OTLP_ENDPOINT], `--override-traces-endpoint`,
`--override-metrics-endpoint`, `--override-logs-endpoint` [OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT],
`--observability-protocol` [WASMCLOUD_OBSERVABILITY_PROTOCOL], `--tls-ca-path`
[WASMCLOUD_TLS_CA_PATH, comma-separated] and `--trace-level` [WASMCLOUD_TRACE_LEVEL]. As a
convenience, an endpoint given without any switch turns observability on.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from provider.observability.otel_settings import otel_settings

# flag dest → (flag, environment variable, otel_config key)
SETTINGS = {
    "enable_observability": ("--enable-observability", "WASMCLOUD_OBSERVABILITY_ENABLED",
                             "enable_observability"),
    "enable_traces": ("--enable-traces", "WASMCLOUD_TRACES_ENABLED", "enable_traces"),
    "enable_metrics": ("--enable-metrics", "WASMCLOUD_METRICS_ENABLED", "enable_metrics"),
    "enable_logs": ("--enable-logs", "WASMCLOUD_LOGS_ENABLED", "enable_logs"),
    "observability_endpoint": ("--override-observability-endpoint",
                               "OTEL_EXPORTER_OTLP_ENDPOINT", "observability_endpoint"),
    "traces_endpoint": ("--override-traces-endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                        "traces_endpoint"),
    "metrics_endpoint": ("--override-metrics-endpoint", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                         "metrics_endpoint"),
    "logs_endpoint": ("--override-logs-endpoint", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                      "logs_endpoint"),
    "observability_protocol": ("--observability-protocol", "WASMCLOUD_OBSERVABILITY_PROTOCOL",
                               "protocol"),
    "tls_ca_paths": ("--tls-ca-path", "WASMCLOUD_TLS_CA_PATH", "additional_ca_paths"),
    "trace_level": ("--trace-level", "WASMCLOUD_TRACE_LEVEL", "trace_level"),
}  # fmt: skip
SWITCHES = ("enable_observability", "enable_traces", "enable_metrics", "enable_logs")
ENDPOINTS = ("observability_endpoint", "traces_endpoint", "metrics_endpoint", "logs_endpoint")


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    for dest, (flag, env, _) in SETTINGS.items():
        if dest == "enable_observability":
            parser.add_argument(flag, dest=dest, action="store_true", default=None,
                                help=f"[{env}]")  # fmt: skip
        elif dest in SWITCHES:  # the host's take an optional value: --enable-traces[=false]
            parser.add_argument(flag, dest=dest, nargs="?", const="true", default=None,
                                metavar="BOOL", help=f"[{env}]")  # fmt: skip
        else:
            parser.add_argument(flag, dest=dest, default=None, help=f"[{env}]")


def _switch(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in (
        "1", "true", "yes", "on"
    )  # fmt: skip


def otel_config(flags: Mapping[str, Any], environment: Mapping[str, str]) -> dict[str, Any]:
    """HostData's `otel_config` (sans-IO): a flag wins over its environment variable."""
    config: dict[str, Any] = {}
    for dest, (_, env, key) in SETTINGS.items():
        value = flags.get(dest)
        if value is None:
            value = environment.get(env)
        if value is None or value == "":
            continue
        if dest in SWITCHES:
            value = _switch(value)
        elif dest == "observability_protocol":
            value = "Grpc" if str(value).strip().lower() == "grpc" else "Http"
        elif dest == "tls_ca_paths":
            value = [path.strip() for path in str(value).split(",") if path.strip()]
        config[key] = value
    if not any(key in config for key in SWITCHES):
        config["enable_observability"] = any(key in config for key in ENDPOINTS)
    return config


class InvocationTracer:
    """A span per component invocation, exported as the provider exports its own (the same
    `Tracing`, as service `host-shim`); nothing when traces are off."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = otel_settings(config, {})
        self.endpoint: str | None = settings.endpoints["traces"] if settings.traces else None
        self._tracing: Any = None
        if settings.traces:
            from provider.observability.tracing import Tracing

            self._tracing = Tracing(settings, service_name="host-shim")

    @contextlib.contextmanager
    def invocation(self, component_id: str, function: str) -> Iterator[dict[str, str]]:
        """The headers the invocation's wRPC calls carry (its `traceparent`), inside its span;
        empty when traces are off."""
        if self._tracing is None:
            yield {}
            return
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        with self._tracing.tracer.start_as_current_span(
            f"{component_id}/{function}", attributes={"wasmcloud.component.id": component_id}
        ):
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers)
            yield headers

    def shutdown(self) -> None:
        if self._tracing is not None:
            self._tracing.shutdown(5.0)
