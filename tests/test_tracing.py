"""Traces over OTLP/HTTP to a real receiver: a SERVER span per wRPC call joining the caller's
trace (its traceparent), a CLIENT span per statement with the database conventions, ERROR and
the SQLSTATE on a failing statement; nothing at all when observability is off."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from host_shim.otlp_receiver import Received, attributes, running_otlp_receiver
from provider.wrpc.nats_client import WrpcClient
from provider.wrpc.values import Case, Err, Ok
from tests.provider_harness import Caller, RunningProvider, linked_caller

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2


async def spans_of(received: Received, trace_id: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [s for s in received.span_list() if s.trace_id.hex() == trace_id]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} spans of trace {trace_id} did not arrive")


async def traced_caller(
    provider: RunningProvider, nats_url: str, postgres_server: Any, database: str
) -> tuple[Any, WrpcClient, Caller]:
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await client.start()
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    return nc, client, caller


async def test_calls_and_statements_are_traced_into_the_callers_trace(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the host passes OTEL_* through
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    with running_otlp_receiver() as (url, received):
        otel = {"enable_observability": True, "enable_metrics": False, "enable_logs": False,
                "observability_endpoint": url}  # fmt: skip
        provider = RunningProvider(nats_url, otel_config=otel)
        await provider.astart()
        try:
            nc, client, caller = await traced_caller(provider, nats_url, postgres_server, database)
            caller.headers = {**caller.headers,
                              "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}  # fmt: skip
            result = await caller.query("SELECT $1::int4 + 1 AS n", [Case("int4", 7654321)])
            assert isinstance(result, Ok)
            spans = await spans_of(received, TRACE_ID, 2)
            server = next(s for s in spans if s.kind == SERVER)
            client_span = next(s for s in spans if s.kind == CLIENT)
            assert server.parent_span_id.hex() == PARENT_ID  # joins the component's trace
            assert attributes(server) == {
                "rpc.system": "wrpc", "rpc.service": "wasmcloud:postgres/query@0.1.1-draft",
                "rpc.method": "query", "wasmcloud.component.id": caller.source_id,
                "wasmcloud.link.name": "default",
            }  # fmt: skip
            assert client_span.parent_span_id == server.span_id
            db = attributes(client_span)
            assert db["db.system.name"] == "postgresql" and db["db.namespace"] == database
            assert db["db.query.text"] == "SELECT $1::int4 + 1 AS n"  # never the values
            assert db["db.operation.name"] == "SELECT"
            assert db["server.port"] == postgres_server.port
            assert "7654321" not in str(attributes(client_span).values())
            resource = attributes(received.resources[0])
            assert resource["service.name"] == "sqldb-postgres-provider"
            assert resource["deployment.environment"] == "test"

            failing_trace = "0af7651916cd43dd8448eb211c80319c"
            caller.headers["traceparent"] = f"00-{failing_trace}-{PARENT_ID}-01"
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
            await client.close()
            await nc.close()
        finally:
            provider.stop()


async def test_nothing_is_sent_when_observability_is_off(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    with running_otlp_receiver() as (url, received):
        otel = {"enable_observability": False, "observability_endpoint": url}
        provider = RunningProvider(nats_url, otel_config=otel)
        await provider.astart()
        try:
            nc, client, caller = await traced_caller(provider, nats_url, postgres_server, database)
            caller.headers = {**caller.headers, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            for _ in range(5):
                assert isinstance(await caller.query("SELECT 1"), Ok)
            await asyncio.sleep(1.0)
            assert received.requests == 0
            await client.close()
            await nc.close()
        finally:
            provider.stop()


async def test_unsampled_calls_export_nothing_and_reprepares_are_events(
    nats_url: str, postgres_server: Any, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    with running_otlp_receiver() as (url, received):
        otel = {"enable_traces": True, "observability_endpoint": url}
        provider = RunningProvider(nats_url, otel_config=otel)
        await provider.astart()
        try:
            nc = await nats.connect(nats_url)
            client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
            await client.start()
            config = {**postgres_server.link_config(database), "POSTGRES_POOL_SIZE": "1"}
            caller = await linked_caller(provider, nc, client, config)
            unsampled = "11111111111111111111111111111111"
            caller.headers = {**caller.headers,
                              "traceparent": f"00-{unsampled}-{PARENT_ID}-00"}  # fmt: skip
            assert isinstance(await caller.batch("CREATE TABLE ev (a int4)"), Ok)
            token = (await caller.prepare("SELECT * FROM ev")).value
            assert await caller.exec(token) == Ok(0)
            assert isinstance(await caller.batch("ALTER TABLE ev ADD COLUMN b int4"), Ok)

            caller.headers["traceparent"] = f"00-{TRACE_ID}-{PARENT_ID}-01"
            assert await caller.exec(token) == Ok(0)  # its plan changed: prepared again
            spans = await spans_of(received, TRACE_ID, 3)
            server = next(s for s in spans if s.kind == SERVER)
            events = {e.name: attributes(e) for e in server.events}
            assert events["re-prepare"] == {"cause": "plan_changed"}
            assert events["retry"]["attempt"] == 1
            statements = [s for s in spans if s.kind == CLIENT]
            assert len(statements) == 2 and statements[0].status.code == STATUS_ERROR
            assert all(s.parent_span_id == server.span_id for s in statements)
            # Exported in order: had the unsampled calls made spans, they would be here.
            assert not [s for s in received.span_list() if s.trace_id.hex() == unsampled]
            await client.close()
            await nc.close()
        finally:
            provider.stop()
