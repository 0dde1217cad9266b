"""Metrics over OTLP: the Prometheus instruments translated (sans-IO, against the Prometheus
text of the same registry), then exported to real receivers over HTTP and gRPC, and flushed
with the spans inside the host's 300 ms shutdown window."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.provider_harness import Caller
from host_shim.otlp_receiver import Received, attributes, running_otlp_grpc_receiver
from provider.observability.metric_translation import translate
from provider.postgres.metrics import Metrics
from provider.wit.values import Case, Err, Ok
from tests.otlp_harness import PARENT_ID, SERVER, TRACE_ID, eventually, spans_of, traced_component

DURATION = "db.client.operation.duration"


def translated(metrics: Metrics) -> dict[str, Any]:
    return {m.name: m for m in translate(metrics.registry.collect(), 1, 2)}


def test_durations_translate_to_the_database_convention() -> None:
    metrics = Metrics()
    for seconds in (0.0004, 0.003, 0.003, 2.0):
        metrics.durations.succeeded("comp-a", "app", "SELECT", seconds)
    metrics.durations.failed("comp-a#other", "app", "INSERT", 0.02,
                             _sqlstate_error("23505"))  # fmt: skip
    metrics.durations.failed("comp-a", "app", "SELECT", 0.5, TimeoutError())
    histogram = translated(metrics)[DURATION]
    assert histogram.unit == "s" and histogram.data.aggregation_temporality == 2  # cumulative
    points = {(p.attributes.get("db.operation.name"), p.attributes.get("error.type")): p
              for p in histogram.data.data_points}  # fmt: skip
    ok = points[("SELECT", None)]
    assert ok.attributes == {
        "db.system.name": "postgresql", "db.namespace": "app", "db.operation.name": "SELECT",
        "wasmcloud.component.id": "comp-a", "wasmcloud.link.name": "default",
    }  # fmt: skip
    assert ok.count == 4 and ok.sum == pytest.approx(2.0064)
    assert list(ok.explicit_bounds) == [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    assert list(ok.bucket_counts) == [1, 2, 0, 0, 0, 0, 0, 1, 0, 0]  # one more: above 10 s
    failed = points[("INSERT", "23505")]
    assert failed.attributes["db.response.status_code"] == "23505"
    assert failed.attributes["wasmcloud.link.name"] == "other"
    timeout = points[("SELECT", "TimeoutError")]
    assert "db.response.status_code" not in timeout.attributes  # no SQLSTATE: left out


def test_translation_agrees_with_the_prometheus_text() -> None:
    """Same instruments, same numbers: every counter and histogram count in the text format
    equals the OTLP point built from it."""
    metrics = Metrics()
    metrics.retries.labels("comp-a", "not_sent").inc(3)
    metrics.errors.labels("comp-a", "invalid-query").inc()
    metrics.prepares.labels("comp-b", "evicted").inc(2)
    metrics.acquire_wait.labels("comp-a").observe(0.002)
    metrics.durations.succeeded("comp-b", "app", "UPDATE", 0.01)
    metrics.watch(lambda: {"comp-a": {"pool_size": 8, "pool_in_use": 3, "pool_idle": 5,
                                      "pool_waiting": 1, "statements": 4}})  # fmt: skip
    otlp = translated(metrics)
    text = metrics.text().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def total(name: str, **labels: str) -> float:
        return next(s.value for s in families[name].samples
                    if s.name.endswith("_total") and s.labels == labels)  # fmt: skip

    retries = otlp["sqldb_postgres.retries"].data
    assert retries.is_monotonic and retries.data_points[0].value == total(
        "sqldb_postgres_retries", link="comp-a", reason="not_sent"
    )
    assert retries.data_points[0].attributes["reason"] == "not_sent"
    errors = otlp["sqldb_postgres.errors"].data.data_points[0]
    assert errors.attributes["variant"] == "invalid-query" and errors.value == 1
    assert otlp["sqldb_postgres.statement_prepares"].data.data_points[0].value == 2
    wait = otlp["db.client.connection.wait_time"].data.data_points[0]
    assert wait.count == 1 and wait.attributes["db.client.connection.pool.name"] == "comp-a"
    connections = otlp["db.client.connection.count"].data
    assert not connections.is_monotonic
    by_state = {p.attributes["db.client.connection.state"]: p.value
                for p in connections.data_points}  # fmt: skip
    assert by_state == {"used": 3, "idle": 5}
    assert otlp["db.client.connection.max"].data.data_points[0].value == 8
    assert otlp["db.client.connection.pending_requests"].data.data_points[0].value == 1
    assert otlp["sqldb_postgres.statements"].data.data_points[0].value == 4
    duration = otlp[DURATION].data.data_points[0]
    duration_count = next(s.value for s in families["sqldb_postgres_operation_duration_seconds"]
                          .samples if s.name.endswith("_count"))  # fmt: skip
    assert duration.count == duration_count == 1


def _sqlstate_error(sqlstate: str) -> Exception:
    error = Exception("duplicate key")
    error.sqlstate = sqlstate  # type: ignore[attr-defined]
    return error


async def metrics_named(received: Received, name: str, ready: Any) -> Any:
    def arrived() -> Any:
        metric = received.latest_metrics().get(name)
        return metric if metric is not None and ready(metric) else None

    return await eventually(arrived, f"metric {name} as expected")


def duration_points(metric: Any) -> dict[tuple[str, str], Any]:
    return {
        (attributes(p).get("db.operation.name", ""), attributes(p).get("error.type", "")): p
        for p in metric.histogram.data_points
    }


async def exercise(caller: Caller) -> None:
    for n in range(3):
        assert isinstance(await caller.query("SELECT $1::int4", [Case("int4", n)]), Ok)
    assert isinstance(await caller.query("SELECT * FROM no_such_table"), Err)


async def test_the_duration_histogram_and_pool_metrics_arrive_over_http(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # spans, were they on, would be here
    otel = {"enable_observability": True, "enable_traces": False}
    async with traced_component(nats_url, postgres_server, database, otel) as (
        _,
        received,
        _,
        caller,
    ):
        await exercise(caller)

        def complete(metric: Any) -> bool:
            points = duration_points(metric)
            ok = points.get(("SELECT", ""))
            return ok is not None and ok.count >= 3 and ("SELECT", "42P01") in points

        duration = await metrics_named(received, DURATION, complete)
        points = duration_points(duration)
        ok = attributes(points[("SELECT", "")])
        assert ok["db.system.name"] == "postgresql" and ok["db.namespace"] == database
        assert ok["wasmcloud.component.id"] == caller.source_id
        failed = attributes(points[("SELECT", "42P01")])
        assert failed["db.response.status_code"] == "42P01"
        assert duration.unit == "s"
        latest = received.latest_metrics()
        states = {attributes(p)["db.client.connection.state"]
                  for p in latest["db.client.connection.count"].sum.data_points}  # fmt: skip
        assert states == {"used", "idle"}
        errors = latest["sqldb_postgres.errors"].sum.data_points
        assert [attributes(p)["variant"] for p in errors] == ["invalid-query"]
        assert received.span_list() == []  # traces were turned off on their own


async def test_shutdown_flushes_spans_and_metrics_inside_the_hosts_window(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing would go out on its own for a minute; the host's shutdown sends it all before
    the provider answers, and the answer still comes within 300 ms."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
    on = {"enable_observability": True}
    async with traced_component(nats_url, postgres_server, database, on) as (
        provider,
        received,
        nc,
        caller,
    ):
        await exercise(caller)
        await asyncio.sleep(0.3)
        assert received.requests == 0  # all of it still buffered
        stop = await provider.process.stop_like_host(nc)
        assert stop.reply == b"shutting down"  # within the host's window
        assert len([s for s in received.span_list() if s.trace_id.hex() == TRACE_ID]) == 8
        points = duration_points(received.latest_metrics()[DURATION])
        assert points[("SELECT", "")].count >= 3  # the harness checks its link with one too


async def test_traces_and_metrics_over_grpc(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    otel = {"enable_observability": True, "protocol": "Grpc"}
    async with traced_component(
        nats_url, postgres_server, database, otel, running_otlp_grpc_receiver, "/ignored/path"
    ) as (_, received, _, caller):
        await exercise(caller)
        spans = await spans_of(received, TRACE_ID, 8)
        server = next(s for s in spans if s.kind == SERVER)
        assert server.parent_span_id.hex() == PARENT_ID
        assert attributes(server)["wasmcloud.component.id"] == caller.source_id
        duration = await metrics_named(
            received, DURATION, lambda m: ("SELECT", "42P01") in duration_points(m)
        )
        failed = attributes(duration_points(duration)[("SELECT", "42P01")])
        assert failed["db.response.status_code"] == "42P01"
