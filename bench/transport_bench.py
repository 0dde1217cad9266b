"""wRPC round trip on loopback NATS: one `query` call with a trivial handler.

Measures sequential round trips (latency) and concurrent throughput against a raw NATS
request/reply of the same payload on the same server (the floor any NATS RPC pays), plus the
client+server CPU time per call (both run in this process).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import Any

import nats

from devkit.local_nats import running_nats
from provider.wit.model import postgres_package
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from provider.wrpc.server import CallContext, WrpcServer

ROW = [{"column-name": "?column?", "value": Case("int4", 1)}]


async def handler(context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
    return (Ok([ROW]),)


async def bench(url: str, sequential: int = 2000, concurrent: int = 4000) -> None:
    query = postgres_package().function("query", "query")
    prefix = f"bench-{uuid.uuid4().hex[:8]}.p"
    server_nc, client_nc = await nats.connect(url), await nats.connect(url)
    server = WrpcServer(server_nc, prefix)
    server.export(query, handler, lambda m: (Err(Case("unexpected", m)),))
    await server.start()
    client = WrpcClient(client_nc, prefix)
    await client.start()
    args = ["SELECT 1", []]

    async def raw_responder(msg: Any) -> None:
        await msg.respond(b"\x00\x01\x01\x08?column?\x11\x01")

    await server_nc.subscribe(f"{prefix}.raw", cb=raw_responder)
    await server_nc.flush()

    for _ in range(200):
        await client.call(query, args)
        await client_nc.request(f"{prefix}.raw", b"\x08SELECT 1\x00")

    latencies = []
    cpu = time.process_time()
    for _ in range(sequential):
        started = time.perf_counter()
        await client.call(query, args, {"source-id": "bench"})
        latencies.append(time.perf_counter() - started)
    cpu_per_call = (time.process_time() - cpu) / sequential * 1e6
    raw = []
    for _ in range(sequential):
        started = time.perf_counter()
        await client_nc.request(f"{prefix}.raw", b"\x08SELECT 1\x00")
        raw.append(time.perf_counter() - started)

    median = statistics.median(latencies) * 1e6
    p99 = statistics.quantiles(latencies, n=100)[98] * 1e6
    raw_median = statistics.median(raw) * 1e6
    print(f"sequential wRPC query round trip: median {median:.0f} µs, p99 {p99:.0f} µs")
    print(f"raw NATS request/reply:           median {raw_median:.0f} µs")
    print(f"ratio wRPC / raw request: {median / raw_median:.2f}x (wRPC sends ~5 messages, raw 2)")
    print(f"CPU per wRPC call (client + server in one process): {cpu_per_call:.0f} µs")

    started = time.perf_counter()
    semaphore = asyncio.Semaphore(64)

    async def one() -> None:
        async with semaphore:
            await client.call(query, args)

    await asyncio.gather(*(one() for _ in range(concurrent)))
    rate = concurrent / (time.perf_counter() - started)
    print(f"concurrent (64 in flight): {rate:.0f} calls/s")

    await client.close()
    await server.stop()
    await server_nc.close()
    await client_nc.close()


def main() -> None:
    with running_nats() as url:
        asyncio.run(bench(url))


if __name__ == "__main__":
    main()
