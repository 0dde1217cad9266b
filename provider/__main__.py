"""`python -m provider`: run the sqldb-postgres capability provider.

Started by a wasmCloud host, it reads HostData (one base64 JSON line) from stdin. Standalone,
it takes the same settings from flags or environment variables; flags win over stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from provider.common.redaction import SecretRedactor
from provider.lattice.host_data import HostData, HostDataError, parse_host_data
from provider.lattice.lattice_connection import LatticeUnavailable
from provider.lattice.logs import setup_logging
from provider.lattice.runtime import ProviderRuntime, health_deadline
from provider.observability.otel_settings import otel_settings
from provider.sqldb.hooks import PostgresProvider

if TYPE_CHECKING:
    from provider.observability.telemetry import Telemetry


def program_name() -> str:
    """How this was started: `python -m provider`, the console script or the executable."""
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m provider" if started_as in ("", "__main__.py", "-m") else started_as


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="wasmcloud:postgres capability provider (wRPC over NATS, PostgreSQL via "
        "asyncpg). A host writes base64(JSON(HostData)) to stdin; standalone runs use the "
        "flags below (each also read from the environment variable shown).",
    )
    env = os.environ.get
    parser.add_argument("--nats-url", default=env("NATS_URL"), help="lattice NATS URL [NATS_URL]")
    parser.add_argument("--lattice", default=env("WASMCLOUD_LATTICE"),
                        help="lattice name [WASMCLOUD_LATTICE] (default: default)")  # fmt: skip
    parser.add_argument("--provider-id", default=env("PROVIDER_ID"),
                        help="provider id [PROVIDER_ID] (default: sqldb-postgres)")  # fmt: skip
    parser.add_argument("--host-id", default=env("HOST_ID"), help="host id for shutdown [HOST_ID]")
    parser.add_argument("--log-level", default=env("LOG_LEVEL"), help="log level [LOG_LEVEL]")
    parser.add_argument("--structured-logging", action="store_true",
                        default=env("STRUCTURED_LOGGING", "").lower() in ("1", "true", "yes"),
                        help="JSON log lines [STRUCTURED_LOGGING]")  # fmt: skip
    parser.add_argument("--no-stdin", action="store_true",
                        help="do not read HostData from stdin (default with a TTY)")  # fmt: skip
    return parser.parse_args(argv)


def host_data_from(args: argparse.Namespace) -> HostData:
    host_data = HostData()
    if not args.no_stdin and not sys.stdin.isatty():
        line = sys.stdin.readline()
        if line.strip():
            host_data = parse_host_data(line)
    overrides = {
        "lattice_rpc_url": args.nats_url,
        "lattice_rpc_prefix": args.lattice,
        "provider_key": args.provider_id,
        "host_id": args.host_id,
        "log_level": args.log_level,
    }
    host_data = replace(host_data, **{k: v for k, v in overrides.items() if v})
    if args.structured_logging:
        host_data = replace(host_data, structured_logging=True)
    return host_data


def run_event_loop(main_task: Coroutine[Any, Any, None]) -> None:
    """uvloop when installed (it roughly halves the per-call CPU here), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_task)
    else:
        uvloop.run(main_task)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        host_data = host_data_from(args)
    except HostDataError as exc:
        print(f"sqldb-postgres: {exc}", file=sys.stderr)
        return 2
    # One redactor: the runtime teaches it secrets, logs, answers and spans use it.
    redactor = SecretRedactor()
    setup_logging(host_data.structured_logging, host_data.log_level, redactor)
    provider = PostgresProvider(redactor=redactor)
    # The database probes answer with room to spare inside the runtime's own health bound.
    provider.service.health_deadline = 0.8 * health_deadline(host_data)
    metrics_port = host_data.config.get("METRICS_PORT") or os.environ.get("METRICS_PORT")
    if metrics_port:
        address = host_data.config.get("METRICS_ADDRESS") or os.environ.get("METRICS_ADDRESS")
        try:
            provider.serve_metrics(int(metrics_port), address or "127.0.0.1")
        except (ValueError, OSError) as exc:
            logging.getLogger("provider").error("metrics not served", extra={"error": str(exc)})
    telemetry = start_telemetry(host_data, provider)
    runtime = ProviderRuntime(host_data, provider, redactor)
    try:
        run_event_loop(runtime.run())
    except KeyboardInterrupt:
        pass
    except LatticeUnavailable as exc:
        # One line naming the cause; exiting lets the host restart us with fresh HostData.
        logging.getLogger("provider").error(f"cannot serve, exiting: {exc}")
        return 1
    finally:
        if telemetry is not None:
            # Runs when `run()` ended without the runtime's shutdown (it failed to start, or
            # lost the lattice); after a shutdown both signals are done and this returns.
            telemetry.flush(2.0)
    return 0


def start_telemetry(host_data: HostData, provider: PostgresProvider) -> Telemetry | None:
    """OTLP export as the host's `otel_config` (and the provider config) ask; None when off,
    and then nothing of OpenTelemetry is even imported."""
    settings = otel_settings(host_data.otel_config, host_data.config)
    if not (settings.traces or settings.metrics):
        return None
    from provider.observability.telemetry import Telemetry
    from provider.observability.tracing import TraceIds

    telemetry = Telemetry(settings, provider.service.metrics.registry)
    provider.observe(telemetry)
    if telemetry.tracing is not None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(TraceIds())
    return telemetry


if __name__ == "__main__":
    sys.exit(main())
