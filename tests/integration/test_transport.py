"""wRPC over a real NATS server: the server and client against each other and raw peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest

from devkit.local_nats import running_nats
from provider.wit.codec import Codec
from provider.wit.model import postgres_package
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import EmptyResult, NoResponders, WrpcClient
from provider.wrpc.framing import invocation_subject, results_subject
from provider.wrpc.server import CallContext, WrpcServer
from tests.waiting import until

PACKAGE = postgres_package()
QUERY = PACKAGE.function("query", "query")
BATCH = PACKAGE.function("query", "query-batch")
CODEC = Codec()


def unexpected(message: str) -> tuple[Any, ...]:
    return (Err(Case("unexpected", message)),)


def text_rows(*texts: str) -> Ok:
    return Ok([[{"column-name": "t", "value": Case("text", t)}] for t in texts])


class EchoService:
    """query echoes its SQL text and parameters back as rows; query-batch fails or sleeps."""

    def __init__(self) -> None:
        self.contexts: list[CallContext] = []
        self.active = 0
        self.max_active = 0
        self.delay = 0.0

    async def query(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        self.contexts.append(context)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            sql, values = params
            return (text_rows(sql, *(str(v.value) for v in values)),)
        finally:
            self.active -= 1

    async def query_batch(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (sql,) = params
        if sql == "sleep":
            await asyncio.sleep(30)
        raise RuntimeError("handler bug")


async def start_server(nc: Any, prefix: str, service: EchoService, **options: Any) -> WrpcServer:
    server = WrpcServer(nc, prefix, **options)
    server.export(QUERY, service.query, unexpected)
    server.export(BATCH, service.query_batch, unexpected)
    await server.start()
    return server


@pytest.fixture
def service() -> EchoService:
    return EchoService()


@pytest.fixture
async def server(nc: Any, prefix: str, service: EchoService) -> AsyncIterator[WrpcServer]:
    server = await start_server(nc, prefix, service, params_timeout=0.5)
    yield server
    await server.stop()


@pytest.fixture
async def client(nats_url: str, prefix: str) -> AsyncIterator[WrpcClient]:
    # Its own connection, as a host would have.
    connection = await nats.connect(nats_url)
    client = WrpcClient(connection, prefix, result_timeout=10)
    await client.start()
    yield client
    await client.close()
    await connection.close()


async def test_small_call_roundtrip_passes_headers_through(
    server: WrpcServer, client: WrpcClient, service: EchoService
) -> None:
    headers = {
        "source-id": "app-querier",
        "link-name": "default",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    (result,) = await client.call(QUERY, ["SELECT $1", [Case("text", "hi")]], headers)
    assert result == text_rows("SELECT $1", "hi")
    (context,) = service.contexts
    assert context.source_id == "app-querier" and context.link_name == "default"
    assert context.headers["traceparent"] == headers["traceparent"]
    assert context.function == "query" and context.instance == QUERY.instance


async def test_large_params_and_results_span_many_chunks(
    server: WrpcServer, client: WrpcClient
) -> None:
    big = "x" * (3 * 1024 * 1024 + 17)  # > 3 default max_payloads
    (result,) = await client.call(QUERY, [big, [Case("text", "tail")]])
    assert result == text_rows(big, "tail")


@pytest.fixture(scope="module")
def small_payload_nats() -> Iterator[str]:
    with running_nats(max_payload=4096) as url:
        yield url


async def test_chunking_respects_a_small_max_payload(
    small_payload_nats: str, prefix: str, service: EchoService
) -> None:
    server_nc = await nats.connect(small_payload_nats)
    client_nc = await nats.connect(small_payload_nats)
    try:
        assert client_nc.max_payload == 4096
        server = await start_server(server_nc, prefix, service)
        client = WrpcClient(client_nc, prefix, result_timeout=10)
        await client.start()
        values = [Case("text", f"value {i} " * 50) for i in range(40)]  # ~20 KiB of params
        headers = {"source-id": "s" * 500}
        (result,) = await client.call(QUERY, ["SELECT", values], headers)
        assert result == text_rows("SELECT", *(v.value for v in values))
        await server.stop()
    finally:
        await server_nc.close()
        await client_nc.close()


async def test_concurrent_calls_run_in_parallel_and_get_their_own_answers(
    server: WrpcServer, client: WrpcClient, service: EchoService, nc: Any
) -> None:
    service.delay = 0.05
    subscriptions_before = len(nc._subs)
    results = await asyncio.gather(
        *(client.call(QUERY, [f"call {i}", [Case("int4", i)]]) for i in range(32))
    )
    for i, (result,) in enumerate(results):
        assert result.value[0][0]["value"] == Case("text", f"call {i}")
    assert service.max_active > 1  # each call in its own task
    assert len(nc._subs) == subscriptions_before  # no subscription per call


async def raw_invoke(nc: Any, prefix: str, payload: bytes, function: str = "query") -> Any:
    """Publish an invocation by hand; returns (handshake message, results queue)."""
    reply = nc.new_inbox()
    results: asyncio.Queue[Any] = asyncio.Queue()
    handshake = await nc.subscribe(reply, max_msgs=1)
    await nc.subscribe(results_subject(reply), cb=results.put)
    await nc.publish(invocation_subject(prefix, QUERY.instance, function), payload, reply=reply)
    return await handshake.next_msg(timeout=5), results


async def collect_results(results: asyncio.Queue[Any]) -> bytes:
    data = b""
    while payload := (await asyncio.wait_for(results.get(), 5)).data:
        data += payload
    return data


async def test_peer_that_never_ends_params_gets_an_error_answer(
    server: WrpcServer, nc: Any, prefix: str
) -> None:
    encoded = CODEC.encode_values(QUERY.param_types, ["SELECT 1", [Case("int4", 1)]])
    handshake, results = await raw_invoke(nc, prefix, encoded[:5])
    assert handshake.data == b"" and handshake.reply  # the server's params inbox
    (answer,) = CODEC.decode_values(QUERY.results, await collect_results(results))
    assert isinstance(answer, Err) and answer.value.tag == "unexpected"
    assert "parameters incomplete after 0.5 s (5 bytes received" in answer.value.value
    assert server.awaiting_params == 0


async def test_params_sent_after_the_handshake_are_assembled(
    server: WrpcServer, nc: Any, prefix: str
) -> None:
    encoded = CODEC.encode_values(QUERY.param_types, ["SELECT 2", [Case("text", "late")]])
    handshake, results = await raw_invoke(nc, prefix, encoded[:3])
    await nc.publish(f"{handshake.reply}.params", encoded[3:9])
    await nc.publish(f"{handshake.reply}.params", encoded[9:])
    await nc.publish(f"{handshake.reply}.params", b"")
    answer = CODEC.decode_values(QUERY.results, await collect_results(results))
    assert answer == (text_rows("SELECT 2", "late"),)


async def test_malformed_params_get_a_typed_error_and_the_server_keeps_serving(
    server: WrpcServer, client: WrpcClient, nc: Any, prefix: str
) -> None:
    _, results = await raw_invoke(nc, prefix, b"\x02\xc3\x28\x00")
    (answer,) = CODEC.decode_values(QUERY.results, await collect_results(results))
    assert answer.value.tag == "unexpected"
    assert "malformed parameters" in answer.value.value and "UTF-8" in answer.value.value
    (result,) = await client.call(QUERY, ["still here", []])
    assert result == text_rows("still here")


async def test_handler_crash_is_answered_not_silent(server: WrpcServer, client: WrpcClient) -> None:
    (result,) = await client.call(BATCH, ["boom"])
    assert result == Err(Case("unexpected", "internal error: RuntimeError"))


async def test_without_failure_result_the_stream_just_ends(
    nc: Any, prefix: str, client: WrpcClient, service: EchoService
) -> None:
    server = WrpcServer(nc, prefix)
    server.export(BATCH, service.query_batch)  # no failure result
    await server.start()
    with pytest.raises(EmptyResult):
        await client.call(BATCH, ["boom"])
    await server.stop()


async def test_no_responders(client: WrpcClient) -> None:
    with pytest.raises(NoResponders):
        await client.call(QUERY, ["SELECT 1", []])


async def test_client_that_disappears_mid_call(
    server: WrpcServer, client: WrpcClient, nats_url: str, prefix: str
) -> None:
    vanishing = await nats.connect(nats_url)
    encoded = CODEC.encode_values(QUERY.param_types, ["SELECT 3", []])
    handshake, _ = await raw_invoke(vanishing, prefix, encoded[:2])
    assert handshake.reply
    assert server.awaiting_params == 1
    await vanishing.close()  # gone before sending the rest of its params
    await until(lambda: server.awaiting_params == 0, "the abandoned call dropped after its timeout")
    assert server.in_flight == 0
    (result,) = await client.call(QUERY, ["after", []])
    assert result == text_rows("after")


async def test_stop_fails_in_flight_calls_and_stops_taking_new_ones(
    server: WrpcServer, client: WrpcClient
) -> None:
    in_flight = asyncio.create_task(client.call(BATCH, ["sleep"]))
    await asyncio.sleep(0.2)
    assert server.in_flight == 1
    await server.stop(grace=0.05)
    (result,) = await asyncio.wait_for(in_flight, 5)
    assert result == Err(Case("unexpected", "the provider is shutting down"))
    with pytest.raises(NoResponders):
        await client.call(QUERY, ["SELECT 1", []])


async def test_stop_answers_a_call_still_waiting_for_its_params(
    server: WrpcServer, nc: Any, prefix: str
) -> None:
    encoded = CODEC.encode_values(QUERY.param_types, ["SELECT 1", [Case("int4", 1)]])
    _, results = await raw_invoke(nc, prefix, encoded[:4])  # the rest never comes
    await asyncio.sleep(0.05)
    assert server.awaiting_params == 1
    await server.stop(grace=0.05)
    (answer,) = CODEC.decode_values(QUERY.results, await collect_results(results))
    assert answer == Err(Case("unexpected", "the provider is shutting down"))
