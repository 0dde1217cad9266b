"""Provider throughput: `exec` of a hot token and a 10-row `query`, 1, 32 and 64 callers.

Everything runs on this machine in one run: NATS, PostgreSQL, the provider as a child process
(started as a host starts it), and a wRPC client playing the host. The same statements run
directly on asyncpg against the same database (a pool as large as the provider's) as the
reference; the ratio is provider / direct. CPU per call is the provider process's CPU time
(from /proc) divided by the calls it served.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import nats

from host_shim.local_nats import running_nats
from host_shim.local_postgres import PostgresServer, running_postgres
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wrpc.nats_client import WrpcClient
from provider.wrpc.values import Case, Ok
from provider.wrpc.wit_model import postgres_package

POOL_SIZE = 8
CALLERS = (1, 32, 64)
DURATION = float(os.environ.get("BENCH_SECONDS", "3"))
INSERT = "INSERT INTO bench_items (name, qty) VALUES ($1, $2)"
SELECT = "SELECT id, name, qty, price, created FROM bench_items WHERE id <= $1 ORDER BY id"


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    label: str, callers: int, call: Callable[[int], Awaitable[Any]], cpu: Callable[[], float]
) -> tuple[float, float]:
    """Run `call` from `callers` concurrent loops for DURATION seconds; (calls/s, CPU µs/call)."""
    stop = time.perf_counter() + DURATION
    done = 0

    async def loop(worker: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            await call(worker * 1_000_000 + i)
            i += 1
            done += 1

    cpu_before, started = cpu(), time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(callers)))
    elapsed = time.perf_counter() - started
    rate = done / elapsed
    cpu_us = (cpu() - cpu_before) / max(done, 1) * 1e6
    print(f"  {label:<34} {callers:>3} callers  {rate:9.0f} calls/s  {cpu_us:7.0f} µs CPU/call",
          flush=True)  # fmt: skip
    return rate, cpu_us


async def prepare_database(server: PostgresServer) -> str:
    name = await server.create_database("bench")
    connection = await asyncpg.connect(server.dsn(name), ssl=False)
    await connection.execute(
        "CREATE TABLE bench_items (id serial PRIMARY KEY, name text, qty int4, "
        "price numeric(10,2) DEFAULT 9.99, created timestamptz DEFAULT now())"
    )
    await connection.executemany(INSERT, [(f"seed {i}", i) for i in range(10)])
    await connection.close()
    return name


async def bench(nats_url: str, server: PostgresServer) -> None:
    database = await prepare_database(server)
    own_cpu = time.process_time

    print(f"direct asyncpg (pool {POOL_SIZE}), {DURATION:g} s per row:", flush=True)
    pool = await asyncpg.create_pool(server.dsn(database), ssl=False, min_size=POOL_SIZE,
                                     max_size=POOL_SIZE)  # fmt: skip
    direct: dict[tuple[str, int], float] = {}

    async def direct_exec(i: int) -> Any:
        return await pool.execute(INSERT, f"item {i}", i % 100)

    async def direct_query(i: int) -> Any:
        return await pool.fetch(SELECT, 10)

    for callers in CALLERS:
        direct["exec", callers], _ = await measure("exec (INSERT)", callers, direct_exec, own_cpu)
        direct["query", callers], _ = await measure(
            "query (10 rows)", callers, direct_query, own_cpu
        )
    await pool.close()

    host = LatticeHost(nats_url, lattice=f"bench-{uuid.uuid4().hex[:6]}")
    provider = ProviderProcess(host)
    provider.start()
    assert provider.process is not None
    provider_pid = provider.process.pid
    nc = await nats.connect(nats_url)
    try:
        await provider.wait_healthy(nc)
        config = {**server.link_config(database), "POSTGRES_POOL_SIZE": str(POOL_SIZE)}
        await host.put_link(nc, host.link_definition("bench-component", config))
        client = WrpcClient(nc, host.prefix, result_timeout=60)
        await client.start()
        package = postgres_package()
        query, prepare = package.function("query", "query"), package.function("prepared", "prepare")
        exec_ = package.function("prepared", "exec")
        headers = {"source-id": "bench-component"}
        for _ in range(100):
            (token,) = await client.call(prepare, [INSERT], headers)
            if isinstance(token, Ok):
                break
            await asyncio.sleep(0.05)
        token = token.value

        async def provider_exec(i: int) -> Any:
            (result,) = await client.call(
                exec_, [token, [Case("text", f"item {i}"), Case("int4", i % 100)]], headers
            )
            assert isinstance(result, Ok), result

        async def provider_query(i: int) -> Any:
            (result,) = await client.call(query, [SELECT, [Case("int4", 10)]], headers)
            assert isinstance(result, Ok) and len(result.value) == 10, result

        def provider_cpu() -> float:
            return process_cpu_seconds(provider_pid)

        print(f"through the provider (wRPC over NATS, pool {POOL_SIZE}):", flush=True)
        results = {}
        for callers in CALLERS:
            results["exec", callers] = await measure("exec (INSERT)", callers, provider_exec,
                                                     provider_cpu)  # fmt: skip
            results["query", callers] = await measure("query (10 rows)", callers, provider_query,
                                                      provider_cpu)  # fmt: skip
        print("provider / direct asyncpg:")
        for (kind, callers), (rate, _) in results.items():
            print(f"  {kind:<6} {callers:>3} callers  {rate / direct[kind, callers]:.2f}x")
        await client.close()
        await host.shutdown(nc)
    finally:
        provider.kill()
        await nc.close()


def main() -> int:
    print("starting NATS and PostgreSQL ...", flush=True)
    with running_nats() as nats_url, running_postgres() as server:
        asyncio.run(bench(nats_url, server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
