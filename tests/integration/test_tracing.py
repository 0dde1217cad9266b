"""Traces over OTLP/HTTP to a real receiver: a SERVER span per wRPC call joining the caller's
trace (its traceparent), a CLIENT span per statement with the database conventions, ERROR and
the SQLSTATE on a failing statement; nothing at all when observability is off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from host_shim.otlp_receiver import attributes
from provider.wit.values import Case, Err, Ok
from tests import capabilities
from tests.otlp_harness import (
    CLIENT,
    SERVER,
    STATUS_ERROR,
    TRACE_ID,
    eventually,
    spans_of,
    traced_component,
    traceparent,
)


async def test_calls_and_statements_are_traced_into_the_callers_trace(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the host passes OTEL_* through
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    otel = {"enable_observability": True, "enable_metrics": False, "enable_logs": False}
    async with traced_component(nats_url, postgres_server, database, otel) as (
        _,
        received,
        _,
        caller,
    ):
        result = await caller.query("SELECT $1::int4 + 1 AS n", [Case("int4", 7654321)])
        assert isinstance(result, Ok)
        spans = await spans_of(received, TRACE_ID, 2)
        server = next(s for s in spans if s.kind == SERVER)
        client_span = next(s for s in spans if s.kind == CLIENT)
        assert server.parent_span_id.hex() == traceparent().split("-")[2]  # the caller's span
        assert attributes(server) == {
            "rpc.system": "wrpc", "rpc.service": "wasmcloud:postgres/query@0.1.1-draft",
            "rpc.method": "query", "wasmcloud.component.id": caller.source_id,
            "wasmcloud.link.name": "default",
        }  # fmt: skip
        assert client_span.parent_span_id == server.span_id
        db = attributes(client_span)
        assert db["db.system.name"] == "postgresql" and db["db.namespace"] == database
        assert db["db.query.text"] == "SELECT $1::int4 + ? AS n"  # never values nor literals
        assert db["db.operation.name"] == "SELECT"
        assert db["server.port"] == postgres_server.port
        assert "7654321" not in str(attributes(client_span).values())
        resource = attributes(received.resources[0])
        assert resource["service.name"] == "sqldb-postgres-provider"
        assert resource["deployment.environment"] == "test"

        failing_trace = "0af7651916cd43dd8448eb211c80319c"
        caller.headers["traceparent"] = traceparent(failing_trace)
        failed = await caller.query("SELECT * FROM no_such_table")
        assert isinstance(failed, Err)
        spans = await spans_of(received, failing_trace, 2)
        server = next(s for s in spans if s.kind == SERVER)
        statement = next(s for s in spans if s.kind == CLIENT)
        assert statement.status.code == STATUS_ERROR
        assert attributes(statement)["db.response.status_code"] == "42P01"
        assert attributes(statement)["error.type"] == "42P01"
        assert server.status.code == STATUS_ERROR
        assert attributes(server)["error.type"] == "invalid-query"


async def test_nothing_is_sent_when_observability_is_off(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    off = {"enable_observability": False}
    async with traced_component(nats_url, postgres_server, database, off) as (
        provider,
        received,
        nc,
        caller,
    ):
        for _ in range(5):
            assert isinstance(await caller.query("SELECT 1"), Ok)
        await asyncio.sleep(1.0)
        stop = await provider.process.stop_like_host(nc)  # a flush would happen here
        assert stop.reply == b"shutting down"
        assert received.requests == 0


async def test_unsampled_calls_export_nothing_and_reprepares_are_events(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    async with traced_component(nats_url, postgres_server, database, POSTGRES_POOL_SIZE="1") as (
        _,
        received,
        _,
        caller,
    ):
        await asyncio.sleep(0.5)  # the link check's own trace has gone out
        before = {s.trace_id for s in received.span_list()}
        unsampled = "11111111111111111111111111111111"
        caller.headers["traceparent"] = traceparent(unsampled, sampled=False)
        assert isinstance(await caller.batch("CREATE TABLE ev (a int4)"), Ok)
        token = (await caller.prepare("SELECT * FROM ev")).value
        assert await caller.exec(token) == Ok(0)
        assert isinstance(await caller.batch("ALTER TABLE ev ADD COLUMN b int4"), Ok)

        caller.headers["traceparent"] = traceparent()
        assert await caller.exec(token) == Ok(0)  # its plan changed: prepared again
        spans = await spans_of(received, TRACE_ID, 3)
        server = next(s for s in spans if s.kind == SERVER)
        events = {e.name: attributes(e) for e in server.events}
        assert events["re-prepare"] == {"cause": "plan_changed"}
        assert events["retry"]["attempt"] == 1
        statements = [s for s in spans if s.kind == CLIENT]
        assert len(statements) == 2 and statements[0].status.code == STATUS_ERROR
        assert all(s.parent_span_id == server.span_id for s in statements)
        # Exported in order: had the unsampled calls made spans (under their parent, or as
        # new roots), they would be here.
        new_traces = {s.trace_id.hex() for s in received.span_list()} - {t.hex() for t in before}
        assert new_traces == {TRACE_ID}


async def test_a_secret_written_into_the_sql_never_reaches_a_span(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    password = postgres_server.link_config(database)["POSTGRES_PASSWORD"]
    capabilities.require("secrets", bool(password), "this PostgreSQL has no password to hide")
    assert len(password) >= 8
    async with traced_component(nats_url, postgres_server, database) as (_, received, _, caller):
        assert isinstance(await caller.query(f"SELECT '{password}' AS p"), Ok)
        failing = "22222222222222222222222222222222"
        caller.headers["traceparent"] = traceparent(failing)
        assert isinstance(await caller.query(f'SELECT "{password}"'), Err)  # no such column
        spans = await spans_of(received, TRACE_ID, 2) + await spans_of(received, failing, 2)
        statements = {attributes(s)["db.query.text"]: s for s in spans if s.kind == CLIENT}
        assert set(statements) == {"SELECT ? AS p", 'SELECT "[redacted]"'}  # literal; identifier
        assert statements['SELECT "[redacted]"'].status.message == "column ? does not exist"
        assert not [s for s in spans if password in str(s)]


async def test_garbage_trace_headers_start_a_root_and_log_nothing_of_theirs(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    async with traced_component(nats_url, postgres_server, database) as (
        provider,
        received,
        _,
        caller,
    ):
        marker = "garbage-marker"
        caller.headers["traceparent"] = f"zz-{marker}-" + "f" * 3000
        caller.headers["tracestate"] = f"{marker}=" + "a" * 10_000
        for _ in range(3):
            assert isinstance(await caller.query("SELECT 42 AS garbage"), Ok)
        caller.headers["traceparent"] = traceparent()  # valid parent, oversized tracestate
        assert isinstance(await caller.query("SELECT 43"), Ok)
        spans = await spans_of(received, TRACE_ID, 2)
        assert next(s for s in spans if s.kind == SERVER).trace_state == ""  # dropped

        def all_three() -> list[Any] | None:
            found = [s for s in received.span_list() if s.kind == CLIENT
                     and attributes(s)["db.query.text"] == "SELECT ? AS garbage"]  # fmt: skip
            return found if len(found) == 3 else None

        garbage = await eventually(all_three, "the spans of the calls with garbage headers", 10)
        calls = {s.span_id: s for s in received.span_list() if s.kind == SERVER}
        parents = [calls[s.parent_span_id] for s in garbage]
        assert all(not p.parent_span_id for p in parents)  # each one a root of its own trace
        assert len({p.trace_id for p in parents}) == 3
        assert marker not in provider.log_text()


def test_samplers_and_whether_they_follow_the_parent() -> None:
    from opentelemetry.sdk.trace import sampling

    from provider.observability.otel_settings import otel_settings
    from provider.observability.tracing import Tracing

    expected = {
        "always_on": (False, sampling.StaticSampler),
        "always_off": (False, sampling.StaticSampler),
        "traceidratio": (False, sampling.TraceIdRatioBased),
        "parentbased_always_on": (True, sampling.ParentBased),
        "parentbased_always_off": (True, sampling.ParentBased),
        "parentbased_traceidratio": (True, sampling.ParentBased),
        "no-such-sampler": (True, sampling.ParentBased),  # the default
    }
    for name, (follows, kind) in expected.items():
        config = {"enable_traces": True, "traces_sampler": name,
                  "traces_endpoint": "http://127.0.0.1:9/v1/traces"}  # fmt: skip
        settings = otel_settings(config, {})
        tracing = Tracing(settings)
        try:
            assert tracing.follows_parent is follows, name
            assert isinstance(tracing._provider.sampler, kind), name
        finally:
            tracing.shutdown(0.1)


async def test_a_transaction_is_a_span_for_its_whole_life(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    async with traced_component(nats_url, postgres_server, database) as (
        _,
        received,
        _,
        caller,
    ):
        tx = (await caller.begin("serializable")).value
        assert isinstance(await caller.tx_query(tx, "SELECT 1"), Ok)
        await asyncio.sleep(0.2)
        assert isinstance(await caller.commit(tx), Ok)
        rolled_back = "33333333333333333333333333333333"
        caller.headers["traceparent"] = traceparent(rolled_back)
        other = (await caller.begin(read_only=True)).value
        assert isinstance(await caller.tx_query(other, "SELECT * FROM no_such_table"), Err)
        assert isinstance(await caller.commit(other), Err)  # it failed: rolled back instead

        spans = await spans_of(received, TRACE_ID, 7)
        (life,) = [s for s in spans if s.name == f"transaction {database}"]
        begin = next(
            s for s in spans if s.kind == SERVER and attributes(s)["rpc.method"] == "begin"
        )
        assert life.parent_span_id == begin.span_id  # in the trace of the call that began it
        found = attributes(life)
        assert found["sqldb_postgres.transaction.isolation"] == "SERIALIZABLE"
        assert found["sqldb_postgres.transaction.read_only"] is False
        assert found["sqldb_postgres.transaction.outcome"] == "committed"
        assert life.status.code != STATUS_ERROR
        assert (life.end_time_unix_nano - life.start_time_unix_nano) / 1e9 >= 0.2
        spans = await spans_of(received, rolled_back, 7)
        (failed,) = [s for s in spans if s.name == f"transaction {database}"]
        assert attributes(failed)["sqldb_postgres.transaction.outcome"] == "rolled_back_after_error"
        assert attributes(failed)["sqldb_postgres.transaction.read_only"] is True
        assert failed.status.code == STATUS_ERROR
