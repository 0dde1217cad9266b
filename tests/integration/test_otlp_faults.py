"""A collector that is down or hangs costs the calls nothing: they answer as fast as without
one, the host's stop is still answered inside its 300 ms window, and nothing crashes; huge SQL
and endless distinct statements stay bounded in spans and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.local_nats import free_port
from host_shim.otlp_receiver import attributes
from provider.postgres.metrics import Metrics
from provider.wit.values import Case, Ok
from tests.otlp_harness import CLIENT, TRACE_ID, spans_of, traced_component


@contextlib.contextmanager
def nobody_listening() -> Iterator[tuple[str, None]]:
    yield f"http://127.0.0.1:{free_port()}", None


@contextlib.contextmanager
def hanging_collector() -> Iterator[tuple[str, None]]:
    """Accepts connections and reads what is sent, never answering."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = server.accept()
                held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", None
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.mark.parametrize("collector", [nobody_listening, hanging_collector])
@pytest.mark.parametrize("protocol", ["Http", "Grpc"])
async def test_a_collector_down_or_hanging_costs_the_calls_nothing(
    collector: Any, protocol: str, nats_url: str, postgres_server: Any, database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    otel = {"enable_observability": True, "protocol": protocol}
    async with traced_component(nats_url, postgres_server, database, otel, collector) as (
        provider,
        _,
        nc,
        caller,
    ):
        started = time.perf_counter()
        for n in range(50):
            assert isinstance(await caller.query("SELECT $1::int4", [Case("int4", n)]), Ok)
        elapsed = time.perf_counter() - started
        assert elapsed < 10, f"50 calls took {elapsed:.1f} s with the collector away"
        await asyncio.sleep(0.5)  # exports have been tried (and are failing or hanging)
        stop = await provider.process.stop_like_host(nc)
        assert stop.reply == b"shutting down"  # within the host's window
        assert "Traceback" not in provider.log_text()


async def test_huge_sql_is_cut_in_spans(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    sql = "SELECT a FROM (SELECT 1 AS a) AS t WHERE a IN (" + ", ".join(["a"] * 3_000) + ")"
    async with traced_component(nats_url, postgres_server, database) as (_, received, _, caller):
        assert isinstance(await caller.query(sql), Ok)
        (statement,) = [s for s in await spans_of(received, TRACE_ID, 2) if s.kind == CLIENT]
        text = attributes(statement)["db.query.text"]
        assert sql.replace("SELECT 1 AS", "SELECT ? AS").startswith(text) and len(text) == 2048
        assert attributes(statement)["db.operation.name"] == "SELECT"


def test_operation_names_and_remembered_sql_stay_bounded() -> None:
    metrics = Metrics()
    durations = metrics.durations
    for n in range(10_000):
        durations.succeeded("comp", "app", durations.operation(f"word{n} something"), 0.001)
    durations.succeeded("comp", "app", durations.operation("select 1"), 0.001)
    huge = "UPDATE t SET a = 1 -- " + "y" * 1_000_000
    durations.failed("comp", "app", durations.operation(huge), 0.001, TimeoutError())
    (family,) = [f for f in metrics.registry.collect()
                 if f.name == "sqldb_postgres_operation_duration_seconds"]  # fmt: skip
    series = {tuple(s.labels.values()) for s in family.samples if s.name.endswith("_count")}
    assert {labels[2] for labels in series} == {"OTHER", "SELECT", "UPDATE"}
    assert len(series) == 3
    assert huge not in metrics.durations._operations  # named, never kept
