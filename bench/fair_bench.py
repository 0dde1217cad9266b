"""The provider's CPU per call against asyncpg's own, measured fairly (`make bench`, `bench-quick`).

Everything runs here in one run: NATS, PostgreSQL, the provider as a host starts it, and three
measuring processes: the floor (asyncpg named prepared statements on uvloop, no pool object),
`asyncpg.Pool`, and a lean load generator (`bench.lean_caller`) that plays the host's wRPC
calls for a small fraction of the provider's CPU. Rounds are interleaved (floor, pool,
provider, floor, ...) and medians reported. The provider's CPU per call is its process's CPU
(`/proc/PID/stat`) over the window ÷ calls answered.

Behind a pooler: the same provider with a second link through a transaction-mode PgBouncer
(Debian's, when installed) gives the `pooled` rows: CPU per call and p50 of `exec` and the
10-row query, where each call is its own transaction with a freshly prepared unnamed statement
(four round trips instead of one). They have no floor of their own (asyncpg's named statements
do not work behind such a pooler); compare them with the direct rows above them.

Writes `bench/results/latest.json` (and a dated copy) and `bench/results/latest.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
import nats

from bench.cpu_profile import summarise
from bench.floor_worker import INSERT, POOL_SIZE, SELECT_1, SELECT_10
from devkit.local_nats import running_nats
from devkit.local_pgbouncer import pgbouncer_binary, running_pgbouncer
from devkit.local_postgres import PostgresServer, running_postgres
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.codec import Codec
from provider.wit.model import Function, postgres_package
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient
from provider.wrpc.framing import invocation_subject

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CALLS = ("exec", "query-10", "query-1", "prepare")
CALLERS = (1, 16, 64, 256)
COMPONENT = "bench-component"
POOLED_COMPONENT = "bench-component-pooled"  # its link goes through PgBouncer
POOLED_CALLS = ("exec", "query-10")
POOLED_CALLERS = (1, 16, 64)


@dataclass(frozen=True)
class Workload:
    call: str
    function: Function
    payloads: list[str]  # hex invocations, cycled by the callers
    rows: int | None  # expected row count of a query's answer


def process_user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid`, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class Worker:
    """A measuring child process: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, args: list[str], environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, **environment}, cwd=ROOT, text=True,
        )  # fmt: skip
        self._stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        self._stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        ready = self._stdout.readline()
        if not ready:
            raise RuntimeError(f"{args[0]} did not start")

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        self._stdin.write(json.dumps(command) + "\n")
        self._stdin.flush()
        line = self._stdout.readline()
        if not line:
            raise RuntimeError("a measuring process died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        self._stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def prepare_database(server: PostgresServer) -> str:
    name = await server.create_database("bench")
    connection = await asyncpg.connect(server.dsn(name), ssl=False)
    await connection.execute(
        "CREATE TABLE bench_items (id serial PRIMARY KEY, name text, qty int4, "
        "price numeric(10,2) DEFAULT 9.99, created timestamptz DEFAULT now())"
    )
    # Ten rows with distinct times (and fractions), as real rows have: no value repeats.
    await connection.execute(
        "INSERT INTO bench_items (name, qty, price, created) SELECT 'seed ' || g, g, g * 1.25, "
        "now() - g * interval '1 hour 1 minute 1.123457 second' FROM generate_series(0, 9) g"
    )
    await connection.close()
    return name


PROFILE = RESULTS / "profile.json"


async def put_link_and_prepare(
    nats_url: str, host: LatticeHost, component: str, link_config: dict[str, str]
) -> str:
    """Link `component` (with the benchmark's pool size) and prepare its INSERT: the token."""
    nc = await nats.connect(nats_url)
    try:
        config = {**link_config, "POSTGRES_POOL_SIZE": str(POOL_SIZE)}
        await host.put_link(nc, host.link_definition(component, config))
        client = WrpcClient(nc, host.prefix, result_timeout=60)
        await client.start()
        prepare = postgres_package().function("prepared", "prepare")
        for _ in range(100):  # until the link is applied
            (token,) = await client.call(prepare, [INSERT], {"source-id": component})
            if isinstance(token, Ok):
                break
            await asyncio.sleep(0.05)
        assert isinstance(token, Ok), token
        await client.close()
    finally:
        await nc.close()
    return str(token.value)


async def start_provider(
    nats_url: str, server: PostgresServer, database: str, profiled: bool,
    provider_config: dict[str, str] | None = None, otel_config: dict[str, Any] | None = None,
) -> tuple[ProviderProcess, LatticeHost, str]:  # fmt: skip
    host = LatticeHost(nats_url, lattice=f"bench-{uuid.uuid4().hex[:6]}")
    config = provider_config or {}
    observability = otel_config or {"enable_observability": False}
    if profiled:  # the same provider, with a CPU-time sampler that SIGUSR1/SIGUSR2 switch
        RESULTS.mkdir(parents=True, exist_ok=True)
        command = (sys.executable, "-m", "bench.cpu_profile", str(PROFILE))
        provider = ProviderProcess(host, command=command, config=config,
                                   otel_config=observability)  # fmt: skip
    else:
        provider = ProviderProcess(host, config=config, otel_config=observability)
    provider.start()
    nc = await nats.connect(nats_url)
    try:
        await provider.wait_healthy(nc)
    finally:
        await nc.close()
    token = await put_link_and_prepare(nats_url, host, COMPONENT, server.link_config(database))
    return provider, host, token


def workloads(token: str) -> list[Workload]:
    codec, package = Codec(), postgres_package()
    query = package.function("query", "query")
    exec_ = package.function("prepared", "exec")
    prepare = package.function("prepared", "prepare")

    def encoded(function: Function, values: list[Any]) -> str:
        return codec.encode_values(function.param_types, values).hex()

    exec_payloads = [encoded(exec_, [token, [Case("text", f"item {i}"), Case("int4", i)]])
                     for i in range(64)]  # fmt: skip
    return [
        Workload("exec", exec_, exec_payloads, None),
        Workload("query-10", query, [encoded(query, [SELECT_10, [Case("int4", 10)]])], 10),
        Workload("query-1", query,
                 [encoded(query, [SELECT_1, [Case("int4", 1 + i)]]) for i in range(10)], 1),
        Workload("prepare", prepare, [encoded(prepare, [INSERT])], None),
    ]  # fmt: skip


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")  # fmt: skip


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def calls_per_second(rounds: list[dict[str, Any]]) -> int:
    return round(median_of([{"rate": r["calls"] / r["seconds"]} for r in rounds], "rate"))


def first_error(rounds: list[dict[str, Any]]) -> dict[str, str]:
    """`{"first_error": ...}` when a round saw an error, else nothing."""
    errors = [r["first_error"] for r in rounds if r["first_error"]]
    return {"first_error": errors[0]} if errors else {}


def provider_round(caller: Worker, provider_pid: int, command: dict[str, Any]) -> dict[str, Any]:
    """One round of calls: the caller's answer with the provider process's CPU per call over
    it (`cpu_us`, and of that `system_us`)."""
    user_before, system_before = process_user_system_seconds(provider_pid)
    answer = caller.run(command)
    user_after, system_after = process_user_system_seconds(provider_pid)
    calls = max(answer["calls"], 1)
    answer["cpu_us"] = (user_after - user_before + system_after - system_before) / calls * 1e6
    answer["system_us"] = (system_after - system_before) / calls * 1e6
    return answer


def measure(
    args: argparse.Namespace, provider_pid: int, host: LatticeHost, token: str,
    floor: Worker, pool: Worker | None, caller: Worker,
) -> list[dict[str, Any]]:  # fmt: skip
    rows: list[dict[str, Any]] = []
    plan = [(w, n) for w in workloads(token) if w.call in args.calls for n in args.callers]
    headers = {"source-id": COMPONENT, "link-name": "default"}
    for workload in workloads(token):  # warm-up: statements prepared, caches filled
        command = _provider_command(host, workload, headers, 8, args.warmup)
        caller.run(command)
        floor.run({"call": workload.call, "callers": 8, "seconds": args.warmup})
    print(f"{'call':<9} {'callers':>7} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'provider µs':>11} {'floor µs':>8} {'ratio':>6} {'pool µs':>8} {'errors':>6}",
          flush=True)  # fmt: skip
    for number, (workload, callers) in enumerate(plan, 1):
        print(
            f"  [{number}/{len(plan)}] {workload.call} x {callers} callers ...",
            end="\r",
            flush=True,
        )  # fmt: skip  (a progress line, overwritten by the row)
        floor_rounds, pool_rounds, provider_rounds = [], [], []
        reference = {"call": workload.call, "callers": callers, "seconds": args.seconds}
        profiled = args.profile == f"{workload.call}:{callers}"
        for round_number in range(args.rounds):
            floor_rounds.append(floor.run(reference))
            if pool is not None:
                pool_rounds.append(pool.run(reference))
            if profiled and round_number == 0:
                os.kill(provider_pid, signal.SIGUSR1)
            command = _provider_command(host, workload, headers, callers, args.seconds)
            answer = provider_round(caller, provider_pid, command)
            if profiled and round_number == 0:
                os.kill(provider_pid, signal.SIGUSR2)
                time.sleep(0.3)
                print(summarise(PROFILE, answer["calls"]), flush=True)
            provider_rounds.append(answer)
        provider_cpu = median_of(provider_rounds, "cpu_us")
        floor_cpu = median_of(floor_rounds, "cpu_us")
        row = {
            "call": workload.call,
            "callers": callers,
            "provider_cpu_us": round(provider_cpu, 1),
            "floor_cpu_us": round(floor_cpu, 1),
            "cpu_ratio": round(provider_cpu / floor_cpu, 2),
            "calls_per_s": calls_per_second(provider_rounds),
            "p50_ms": round(median_of(provider_rounds, "p50_ms"), 3),
            "p99_ms": round(median_of(provider_rounds, "p99_ms"), 3),
            "errors": sum(r["errors"] for r in provider_rounds),
            "floor_p50_ms": round(median_of(floor_rounds, "p50_ms"), 3),
            "floor_p99_ms": round(median_of(floor_rounds, "p99_ms"), 3),
            "floor_calls_per_s": round(median_of([
                {"rate": r["calls"] / r["seconds"]} for r in floor_rounds], "rate")),
            "client_cpu_us": round(median_of([
                {"us": r["client_cpu_s"] / max(r["calls"], 1) * 1e6} for r in provider_rounds],
                "us"), 1),
        }  # fmt: skip
        row["provider_system_us"] = round(median_of(provider_rounds, "system_us"), 1)
        if pool_rounds:
            row["pool_cpu_us"] = round(median_of(pool_rounds, "cpu_us"), 1)
        row.update(first_error(provider_rounds))
        rows.append(row)
        print(f"\r{row['call']:<9} {callers:>7} {row['calls_per_s']:>9} {row['p50_ms']:>7.2f} "
              f"{row['p99_ms']:>7.2f} {row['provider_cpu_us']:>11.0f} {row['floor_cpu_us']:>8.0f} "
              f"{row['cpu_ratio']:>5.1f}x {row.get('pool_cpu_us', 0):>8.0f} {row['errors']:>6}",
              flush=True)  # fmt: skip
    return rows


def measure_pooled(
    args: argparse.Namespace, provider_pid: int, host: LatticeHost, token: str, caller: Worker
) -> list[dict[str, Any]]:
    """The `pooled` rows: the provider's CPU per call and latency behind PgBouncer."""
    rows: list[dict[str, Any]] = []
    headers = {"source-id": POOLED_COMPONENT, "link-name": "default"}
    chosen = [w for w in workloads(token) if w.call in POOLED_CALLS and w.call in args.calls]
    for workload in chosen:  # warm-up
        caller.run(_provider_command(host, workload, headers, 8, args.warmup))
    for workload in chosen:
        for callers in POOLED_CALLERS:
            print(f"  pooled {workload.call} x {callers} callers ...", end="\r", flush=True)
            command = _provider_command(host, workload, headers, callers, args.seconds)
            rounds = [provider_round(caller, provider_pid, command) for _ in range(args.rounds)]
            row = {
                "call": workload.call,
                "callers": callers,
                "path": "pooled",
                "provider_cpu_us": round(median_of(rounds, "cpu_us"), 1),
                "calls_per_s": calls_per_second(rounds),
                "p50_ms": round(median_of(rounds, "p50_ms"), 3),
                "p99_ms": round(median_of(rounds, "p99_ms"), 3),
                "errors": sum(r["errors"] for r in rounds),
            }  # fmt: skip
            row.update(first_error(rounds))
            rows.append(row)
            print(f"\rpooled {row['call']:<9} {callers:>7} {row['calls_per_s']:>9} "
                  f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
                  f"{row['provider_cpu_us']:>11.0f} {row['errors']:>6}", flush=True)  # fmt: skip
    return rows


def _provider_command(host: LatticeHost, workload: Workload, headers: dict[str, str],
                      callers: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    function = workload.function
    subject = invocation_subject(host.prefix, function.instance, function.name)
    return {"subject": subject, "headers": headers, "payloads": workload.payloads,
            "rows": workload.rows, "callers": callers, "seconds": seconds}  # fmt: skip


def markdown_table(document: dict[str, Any]) -> str:
    """The table the README shows (paste it after a `make bench`)."""
    lines = [
        "| call | callers | calls/s | p50 ms | p99 ms | provider CPU µs/call | floor µs/call "
        "| ratio | asyncpg.Pool µs/call | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["rows"]:
        if row.get("path") == "pooled":
            continue
        pool = row.get("pool_cpu_us")
        lines.append(
            f"| `{row['call']}` | {row['callers']} | {row['calls_per_s']:,} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['provider_cpu_us']:.0f} | {row['floor_cpu_us']:.0f} "
            f"| {row['cpu_ratio']:.1f}x | {'-' if pool is None else f'{pool:.0f}'} "
            f"| {row['errors']} |"
        )
    pooled = [row for row in document["rows"] if row.get("path") == "pooled"]
    if pooled:
        lines += [
            "",
            "Behind PgBouncer (transaction mode): the provider's CPU per call and latency",
            "",
            "| call | callers | calls/s | p50 ms | p99 ms | provider CPU µs/call | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{row['call']}` | {row['callers']} | {row['calls_per_s']:,} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['provider_cpu_us']:.0f} "
            f"| {row['errors']} |"
            for row in pooled
        ]
    return "\n".join(lines)


def write_results(rows: list[dict[str, Any]], quick: bool) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kind": "bench-quick" if quick else "bench",
        "rows": rows,
    }
    text = json.dumps(document, indent=2) + "\n"
    latest = RESULTS / "latest.json"
    latest.write_text(text)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.md").write_text(f"{document['machine']}\n\n{markdown_table(document)}\n")
    from bench.chart import draw

    draw(document, RESULTS / "latest.png")
    return latest


async def bench(args: argparse.Namespace, nats_url: str, server: PostgresServer) -> list[Any]:
    database = await prepare_database(server)
    dsn = server.dsn(database)
    provider_config = {"WRPC_DATA_PATH": args.data_path} if args.data_path else {}
    provider, host, token = await start_provider(
        nats_url, server, database, bool(args.profile), provider_config
    )
    assert provider.process is not None
    workers: list[Worker] = []
    try:
        floor = Worker(["bench.floor_worker", "floor"], {"BENCH_DSN": dsn})
        workers.append(floor)
        pool = None
        if not args.no_pool:
            pool = Worker(["bench.floor_worker", "pool"], {"BENCH_DSN": dsn})
            workers.append(pool)
        caller = Worker(["bench.lean_caller"], {"NATS_URL": nats_url})
        workers.append(caller)
        pid = provider.process.pid
        rows = await asyncio.to_thread(measure, args, pid, host, token, floor, pool, caller)
        if args.no_pooled or pgbouncer_binary() is None:
            print("pooled rows skipped (--no-pooled, or pgbouncer is not installed)")
            return rows
        with running_pgbouncer(server, server_connections=POOL_SIZE) as bouncer:
            link = bouncer.link_config(database)
            pooled_token = await put_link_and_prepare(nats_url, host, POOLED_COMPONENT, link)
            pooled = await asyncio.to_thread(measure_pooled, args, pid, host, pooled_token, caller)
        return rows + pooled
    finally:
        for worker in workers:
            worker.close()
        provider.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of short windows")
    parser.add_argument("--seconds", type=float, help="window per measurement")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per row")
    parser.add_argument("--calls", nargs="+", default=list(CALLS), choices=CALLS)
    parser.add_argument("--callers", nargs="+", type=int, default=list(CALLERS))
    parser.add_argument(
        "--profile",
        metavar="CALL:CALLERS",
        help="sample the provider's CPU during that row (e.g. exec:64)",
    )
    parser.add_argument(
        "--data-path",
        choices=["nats-py"],
        help="the provider's WRPC_DATA_PATH (to compare with the lean one)",
    )
    parser.add_argument("--no-pool", action="store_true", help="skip the asyncpg.Pool reference")
    parser.add_argument("--no-pooled", action="store_true", help="skip the rows behind PgBouncer")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (0.7 if args.quick else 2.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = 0.3 if args.quick else 1.0
    started = time.perf_counter()
    print("starting NATS, PostgreSQL and the provider ...", flush=True)
    with running_nats() as nats_url, running_postgres() as server:
        rows = asyncio.run(bench(args, nats_url, server))
    latest = write_results(rows, args.quick)
    elapsed = time.perf_counter() - started
    print(f"wrote {latest.relative_to(ROOT)} and latest.png in {elapsed:.0f} s")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
