"""What to export where, from the host's `HostData.otel_config` and the provider config (sans-IO).

wasmCloud 1.x hosts pass `otel_config` as the host itself was configured: `enable_observability`
(default false), per-signal `enable_traces` / `enable_metrics` / `enable_logs` (each defaulting
to it), `observability_endpoint` and per-signal endpoints, `protocol` (`"Http"`/`"Grpc"`, any
case; default Http), `additional_ca_paths`, `trace_level`, and optionally `traces_sampler`,
`traces_sampler_arg`, `max_batch_queue_size`, `concurrent_exports`. Provider config keys
(case-insensitive) `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`
(TRACES, METRICS, LOGS), `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` override them.
Endpoints resolve as the host's Rust SDK does: a signal's own endpoint as given; else the
shared one (http: `/v1/<signal>` appended when its path is `/`; grpc: its path dropped); else
the collector's defaults on loopback (4318 for http, 4317 for grpc).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SIGNALS = ("traces", "metrics", "logs")
SERVICE_NAME = "sqldb-postgres-provider"
DEFAULT_SAMPLER = "parentbased_always_on"
QUIET_TRACE_LEVELS = ("warn", "warning", "error")


@dataclass(frozen=True)
class OtelSettings:
    traces: bool = False
    metrics: bool = False
    logs: bool = False
    protocol: str = "http"  # or "grpc"
    endpoints: dict[str, str] = field(default_factory=dict)  # signal → URL
    additional_ca_paths: tuple[str, ...] = ()
    trace_level: str = "info"
    sampler: str = DEFAULT_SAMPLER
    sampler_arg: str | None = None
    max_batch_queue_size: int | None = None
    concurrent_exports: int | None = None

    @property
    def enabled(self) -> bool:
        return self.traces or self.metrics or self.logs


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def signal_endpoint(protocol: str, shared: str | None, signal: str) -> str:
    """The endpoint of `signal` when it has none of its own."""
    if not shared:
        return (
            f"http://127.0.0.1:4318/v1/{signal}" if protocol == "http" else "http://127.0.0.1:4317"
        )
    parts = urlsplit(shared)
    if protocol == "grpc":
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    if parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, f"/v1/{signal}", parts.query, ""))
    return shared


def loggable(endpoint: str) -> str:
    """An endpoint as a log line may show it: scheme, host and port (no user, key or query)."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return "(unparsable endpoint)"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def otel_settings(otel_config: Mapping[str, Any] | None, config: Mapping[str, str]) -> OtelSettings:
    """The export settings for this provider process (nothing enabled when absent)."""
    host = dict(otel_config or {})
    overrides = {key.upper(): value for key, value in config.items()}
    everything = _flag(host.get("enable_observability"), False)
    enabled = {signal: _flag(host.get(f"enable_{signal}"), everything) for signal in SIGNALS}
    protocol = str(host.get("protocol") or "http").strip().lower()
    if protocol not in ("http", "grpc"):
        protocol = "http"
    shared = overrides.get("OTEL_EXPORTER_OTLP_ENDPOINT") or host.get("observability_endpoint")
    endpoints = {}
    for signal in SIGNALS:
        own = overrides.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or host.get(
            f"{signal}_endpoint"
        )
        endpoints[signal] = str(own) if own else signal_endpoint(protocol, shared, signal)
    sampler = overrides.get("OTEL_TRACES_SAMPLER") or host.get("traces_sampler") or DEFAULT_SAMPLER
    sampler_arg = overrides.get("OTEL_TRACES_SAMPLER_ARG") or host.get("traces_sampler_arg")
    trace_level = str(host.get("trace_level") or "info").strip().lower()
    return OtelSettings(
        # Our spans are INFO spans: a host tracing at WARN or ERROR level wants none of them.
        traces=enabled["traces"] and trace_level not in QUIET_TRACE_LEVELS,
        metrics=enabled["metrics"],
        logs=enabled["logs"],
        protocol=protocol,
        endpoints=endpoints,
        additional_ca_paths=tuple(str(p) for p in host.get("additional_ca_paths") or ()),
        trace_level=trace_level,
        sampler=str(sampler).strip().lower(),
        sampler_arg=None if sampler_arg is None else str(sampler_arg),
        max_batch_queue_size=_positive(host.get("max_batch_queue_size")),
        concurrent_exports=_positive(host.get("concurrent_exports")),
    )
