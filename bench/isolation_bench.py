"""Isolation: another component's latency while one component moves a large result or a
16 MiB parameter list (`make bench`; the targets are in the README, not in timed tests).

One provider, two linked components on the same database. The bystander (this process)
calls `SELECT 1` every 10 ms; the heavy component — a process of its own, so that receiving
its results never delays the bystander's loop — runs, back to back: (a) a ~48 MiB result of
400,000 text rows, (b) a result of 1,000,000 small integers (the most Python work per byte),
(c) `query` with 65,535 text parameters of 250 bytes (16 MiB). Reported: the bystander's p50 /
p99 / worst latency in each phase, next to a quiet baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import PostgresServer, running_postgres
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.codec import Codec, encode_uleb128
from provider.wit.model import ListType, postgres_package
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient

PHASE_SECONDS = 4.0
QUERY = postgres_package().function("query", "query")
PHASES = {
    "quiet": "",
    "48 MiB result (400,000 text rows)": "SELECT repeat('x', 100) FROM generate_series(1, 400000)",
    "1,000,000-integer result": "SELECT g FROM generate_series(1, 1000000) g",
    "16 MiB parameter list (65,535 texts)": "params",
}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def heavy_params(sql: str) -> bytes:
    codec = Codec()
    if sql != "params":
        return codec.encode_values(QUERY.param_types, [sql, []])
    out = bytearray(codec.encode_values([QUERY.param_types[0]], ["SELECT $1::text"]))
    encode_uleb128(65_535, out)
    list_type = QUERY.param_types[1]
    assert isinstance(list_type, ListType)
    one = bytearray()
    codec.encoder(list_type.element)(Case("text", "p" * 250), one)
    return bytes(out) + bytes(one) * 65_535


async def heavy(nats_url: str, prefix: str, sql: str, seconds: float) -> None:
    """The heavy component: raw calls, results never decoded (only their size checked)."""
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, prefix, result_timeout=120)
    await client.start()
    params = heavy_params(sql)
    headers = {"source-id": "heavy", "link-name": "default"}
    deadline, calls = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        result = await client.invoke(QUERY.instance, QUERY.name, params, headers)
        assert result[:1] == b"\x00" or sql == "params", result[:200]
        calls += 1
    print(calls, flush=True)
    await client.close()
    await nc.close()


async def run(server: PostgresServer, nats_url: str) -> None:
    database = await server.create_database("isolation")
    host = LatticeHost(nats_url)
    provider = ProviderProcess(host)
    provider.start()
    nc = await nats.connect(nats_url)
    try:
        await provider.wait_healthy(nc)
        client = WrpcClient(nc, host.prefix, result_timeout=120)
        await client.start()
        config = server.link_config(database)
        for source in ("heavy", "bystander"):
            await host.put_link(nc, host.link_definition(source, config))
        await asyncio.sleep(0.5)
        headers = {"source-id": "bystander", "link-name": "default"}

        async def select_one() -> Any:
            (result,) = await client.call(QUERY, ["SELECT 1", []], headers)
            return result

        assert isinstance(await select_one(), Ok)
        print(f"{'while the other component runs':<40} {'p50':>8} {'p99':>8} {'worst':>8} "
              f"{'heavy calls':>12}")  # fmt: skip
        for label, sql in PHASES.items():
            print(f"  ... {label}", file=sys.stderr, flush=True)
            heavy_process = None
            if sql:
                heavy_process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.isolation_bench", "--heavy", nats_url,
                    host.prefix, sql, str(PHASE_SECONDS), stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                await asyncio.sleep(0.5)  # its first call is under way
            latencies: list[float] = []
            deadline = time.perf_counter() + PHASE_SECONDS - 0.5
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                assert isinstance(await select_one(), Ok)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)
            calls = "0"
            if heavy_process is not None:
                output, _ = await heavy_process.communicate()
                calls = output.decode().strip()
            print(f"{label:<40} {statistics.median(latencies) * 1000:7.1f}m "
                  f"{percentile(latencies, 0.99) * 1000:7.1f}m {max(latencies) * 1000:7.1f}m "
                  f"{calls:>12}")  # fmt: skip
        await client.close()
        await host.shutdown(nc)
    finally:
        provider.kill()
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heavy", nargs=4, metavar=("NATS_URL", "PREFIX", "SQL", "SECONDS"))
    args = parser.parse_args(argv)
    if args.heavy:
        url, prefix, sql, seconds = args.heavy
        asyncio.run(heavy(url, prefix, sql, float(seconds)))
        return 0
    with running_nats() as nats_url, running_postgres() as server:
        asyncio.run(run(server, nats_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
