"""A provider exporting to a real OTLP receiver, and a component linked to it (the tracing and
metrics tests' common setup)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import nats

from devkit.provider_harness import Caller, RunningProvider, linked_caller
from host_shim.otlp_receiver import Received, running_otlp_receiver
from provider.wrpc.client import WrpcClient

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2
T = TypeVar("T")


def traceparent(trace_id: str = TRACE_ID, sampled: bool = True) -> str:
    return f"00-{trace_id}-{PARENT_ID}-{'01' if sampled else '00'}"


@contextlib.asynccontextmanager
async def exporting_provider(
    nats_url: str, otel: dict[str, Any], receiver: Callable[[], Any] = running_otlp_receiver,
    path: str = "",
) -> AsyncIterator[tuple[RunningProvider, Received]]:  # fmt: skip
    """A provider whose `otel_config` is `otel` with the receiver's URL (+ `path`) as its
    observability endpoint."""
    with receiver() as (url, received):
        provider = RunningProvider(
            nats_url, otel_config={**otel, "observability_endpoint": url + path}
        )
        await provider.astart()
        try:
            yield provider, received
        finally:
            provider.stop()


@contextlib.asynccontextmanager
async def linked(
    provider: RunningProvider, nats_url: str, link_config: dict[str, str]
) -> AsyncIterator[tuple[Any, Caller]]:
    """(a NATS connection, a component linked with `link_config`) whose calls are traced."""
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await client.start()
    try:
        caller = await linked_caller(provider, nc, client, link_config)
        caller.headers = {**caller.headers, "traceparent": traceparent()}
        yield nc, caller
    finally:
        await client.close()
        await nc.close()


async def eventually(found: Callable[[], T | None], what: str, seconds: float = 15) -> T:
    """What `found()` returns once it returns something (exports arrive in batches)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = found()
        if result is not None:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not arrive")


async def spans_of(received: Received, trace_id: str, count: int) -> list[Any]:
    def enough() -> list[Any] | None:
        spans = [s for s in received.span_list() if s.trace_id.hex() == trace_id]
        return spans if len(spans) >= count else None

    return await eventually(enough, f"{count} spans of trace {trace_id}")


@contextlib.asynccontextmanager
async def traced_component(
    nats_url: str, postgres_server: Any, database: str, otel: dict[str, Any] | None = None,
    receiver: Callable[[], Any] = running_otlp_receiver, path: str = "", **link_config: str,
) -> AsyncIterator[tuple[RunningProvider, Received, Any, Caller]]:  # fmt: skip
    """(provider, what its receiver got, a NATS connection, a component linked to `database`
    with `link_config` added): the provider exporting traces, or as `otel` says, to
    `receiver`; the component's calls carrying a sampled `traceparent`."""
    config = {**postgres_server.link_config(database), **link_config}
    async with (
        exporting_provider(nats_url, otel or {"enable_traces": True}, receiver, path) as (
            provider,
            received,
        ),
        linked(provider, nats_url, config) as (nc, caller),
    ):
        yield provider, received, nc, caller
