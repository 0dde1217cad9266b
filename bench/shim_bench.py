"""Per-import-call cost in the host shim, timed inside the guest (`bench` export).

Three setups, one run: (1) stock wasmtime-py with a host function that answers at once (no
NATS: wasmtime-py plus our value conversion only), (2) the same with the reflection cache the
shim installs, (3) the real path: cached wasmtime-py → wRPC over NATS → provider → PostgreSQL.
Each measures `exec` of a prepared statement and a `query` returning 10 rows x 5 columns.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import running_postgres
from host_shim import wasmtime_reflection_cache
from host_shim.component_host import ComponentHost
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient

ROOT = Path(__file__).resolve().parents[1]
WASM = ROOT / "components" / "example" / "build" / "example.wasm"
CALLS = int(os.environ.get("SHIM_BENCH_CALLS", "300"))
ROWS = Ok(
    [
        [
            {"column-name": "id", "value": Case("int4", i)},
            {"column-name": "name", "value": Case("text", f"name {i}")},
            {"column-name": "score", "value": Case("numeric", f"{i * 1.5}")},
            {"column-name": "even", "value": Case("bool", i % 2 == 0)},
            {"column-name": "at", "value": Case("int8", 1_700_000_000 + i)},
        ]
        for i in range(10)
    ]
)


class AnswersAtOnce:
    """A stand-in for the wRPC client: isolates wasmtime-py and the value conversion."""

    async def call(self, function: Any, args: Any, headers: Any) -> tuple[Any, ...]:
        if function.name == "query":
            return (ROWS,)
        if function.name == "prepare":
            return (Ok("token"),)
        return (Ok(1),)


async def per_call_us(host: ComponentHost, kind: str) -> float:
    await asyncio.to_thread(host.call_export, "bench", kind, 5)  # warm up
    nanoseconds = await asyncio.to_thread(host.call_export, "bench", kind, CALLS)
    return float(nanoseconds) / CALLS / 1000


async def main() -> None:
    loop = asyncio.get_running_loop()
    results: dict[str, dict[str, float]] = {}
    print(f"{CALLS} calls per row, timed inside the guest", flush=True)

    stock = _stock_host(AnswersAtOnce(), loop)  # before the cache is installed
    results["wasmtime-py stock, answer at once"] = {
        "exec": await per_call_us(stock, "exec"),
        "query": await per_call_us(stock, "query"),
    }
    wasmtime_reflection_cache.install()
    cached = ComponentHost(WASM, AnswersAtOnce(), {}, loop)  # type: ignore[arg-type]
    results["wasmtime-py cached, answer at once"] = {
        "exec": await per_call_us(cached, "exec"),
        "query": await per_call_us(cached, "query"),
    }
    with running_nats() as nats_url, running_postgres() as server:
        lattice = LatticeHost(nats_url)
        provider = ProviderProcess(lattice)
        provider.start()
        nc = await nats.connect(nats_url)
        try:
            await provider.wait_healthy(nc)
            await lattice.put_link(
                nc, lattice.link_definition("bench", server.link_config("postgres"))
            )
            await asyncio.sleep(0.3)
            client = WrpcClient(nc, lattice.prefix)
            await client.start()
            real = ComponentHost(WASM, client, {"source-id": "bench"}, loop)
            results["cached + wRPC + provider + PostgreSQL"] = {
                "exec": await per_call_us(real, "exec"),
                "query": await per_call_us(real, "query"),
            }
            await client.close()
        finally:
            provider.kill()
            await nc.close()
    print(f"{'setup':<42} {'exec µs':>9} {'10-row query µs':>16}")
    for setup, numbers in results.items():
        print(f"{setup:<42} {numbers['exec']:9.0f} {numbers['query']:16.0f}")


def _stock_host(client: Any, loop: asyncio.AbstractEventLoop) -> ComponentHost:
    """A ComponentHost without the reflection cache (install() is what the shim does)."""
    original = wasmtime_reflection_cache.install
    wasmtime_reflection_cache.install = lambda: None  # type: ignore[assignment]
    try:
        return ComponentHost(WASM, client, {}, loop)
    finally:
        wasmtime_reflection_cache.install = original  # type: ignore[assignment]


if __name__ == "__main__":
    subprocess.run([sys.executable, str(ROOT / "components" / "build.py")], check=True)
    asyncio.run(main())
