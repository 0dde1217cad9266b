"""The benchmark's reference: the same statements straight on asyncpg, measuring its own CPU.

Two modes, each in its own process (a child of `bench.fair_bench`, one JSON command per stdin
line): `floor` is the physical floor the provider wraps: asyncpg connections with named
prepared statements on uvloop, no pool object (a caller takes connection `i % 8` under a plain
lock); `pool` is `asyncpg.Pool` with the same statements, what a hand-written service would
use. CPU per call is this process's CPU over the window ÷ calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import uvloop

from bench.lean_caller import percentile

POOL_SIZE = 8
INSERT = "INSERT INTO bench_items (name, qty) VALUES ($1, $2)"
# ORDER BY id LIMIT: always the primary key's index (a generic plan for `id <= $1` flips to a
# sequential scan once the exec rows have grown the table, for the floor and provider alike).
SELECT_10 = "SELECT id, name, qty, price, created FROM bench_items ORDER BY id LIMIT $1"
SELECT_1 = "SELECT id, name, qty, price, created FROM bench_items WHERE id = $1"

Call = Callable[[int], Awaitable[Any]]


def floor_calls(connections: list[asyncpg.Connection]) -> dict[str, Callable[[int], Call]]:
    """Per workload: a factory giving caller `w` its call on connection `w % POOL_SIZE`."""
    locks = [asyncio.Lock() for _ in connections]
    statements: dict[tuple[str, int], Any] = {}

    async def prepared(sql: str, index: int) -> Any:
        if (sql, index) not in statements:
            statements[sql, index] = await connections[index].prepare(sql)
        return statements[sql, index]

    def workload(run: Callable[[int, int], Awaitable[Any]]) -> Callable[[int], Call]:
        def for_caller(worker: int) -> Call:
            index = worker % len(connections)
            lock = locks[index]

            async def call(i: int) -> Any:
                async with lock:
                    return await run(index, i)

            return call

        return for_caller

    async def exec_(index: int, i: int) -> Any:
        return await connections[index].execute(INSERT, f"item {i}", i % 100)

    async def query_10(index: int, i: int) -> Any:
        rows = await (await prepared(SELECT_10, index)).fetch(10)
        assert len(rows) == 10
        return rows

    async def query_1(index: int, i: int) -> Any:
        return await (await prepared(SELECT_1, index)).fetch(1 + i % 10)

    async def prepare(index: int, i: int) -> Any:
        return await connections[index].prepare(INSERT)

    return {"exec": workload(exec_), "query-10": workload(query_10),
            "query-1": workload(query_1), "prepare": workload(prepare)}  # fmt: skip


def pool_calls(pool: asyncpg.Pool) -> dict[str, Callable[[int], Call]]:
    async def exec_(i: int) -> Any:
        return await pool.execute(INSERT, f"item {i}", i % 100)

    async def query_10(i: int) -> Any:
        return await pool.fetch(SELECT_10, 10)

    async def query_1(i: int) -> Any:
        return await pool.fetch(SELECT_1, 1 + i % 10)

    async def prepare(i: int) -> Any:
        async with pool.acquire() as connection:
            return await connection.prepare(INSERT)

    return {name: (lambda worker, call=call: call)
            for name, call in (("exec", exec_), ("query-10", query_10),
                               ("query-1", query_1), ("prepare", prepare))}  # fmt: skip


Workloads = dict[str, Callable[[int], Call]]


async def run(workloads: Workloads, command: dict[str, Any]) -> dict[str, Any]:
    seconds = float(command["seconds"])
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter

    async def loop(worker: int) -> None:
        nonlocal errors
        call = workloads[command["call"]](worker)
        i = worker * 1_000_000
        while clock() < stop:
            started = clock()
            try:
                await call(i)
            except Exception:
                errors += 1
                continue
            latencies.append(clock() - started)
            i += 1

    cpu_before = time.process_time()
    started = clock()
    stop = started + seconds
    await asyncio.gather(*(loop(w) for w in range(int(command["callers"]))))
    elapsed = clock() - started
    cpu = time.process_time() - cpu_before
    latencies.sort()
    return {
        "calls": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "cpu_us": cpu / max(len(latencies), 1) * 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def serve(dsn: str, mode: str) -> None:
    if mode == "floor":
        connections = [await asyncpg.connect(dsn, ssl=False) for _ in range(POOL_SIZE)]
        workloads = floor_calls(connections)
    else:
        pool = await asyncpg.create_pool(dsn, ssl=False, min_size=POOL_SIZE, max_size=POOL_SIZE)
        workloads = pool_calls(pool)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        print(json.dumps(await run(workloads, json.loads(line))), flush=True)


def main() -> int:
    uvloop.run(serve(os.environ["BENCH_DSN"], sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
