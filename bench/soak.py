"""`make soak`: two replicas for a long while under steady load, churn and faults; what they
hold, minute by minute (`SOAK_MINUTES`, default 20; a progress line a minute).

Real NATS (JetStream: the replicas share the statement bucket) and PostgreSQL, two replicas of
the provider from source as a host starts them, a host's control interface answering their
`link.get` (what a NATS restart made them miss comes back from it), and:
- **steady load**: 4 components `exec` a prepared INSERT, `query`, and run a transaction
  (begin, exec, commit), back to back; an `unknown-prepared-query` is a token lost between
  replicas;
- **churn**: every 2 s a component under a new name is linked with a bound of 20 statements,
  prepares 40 statements of generated SQL, execs some, begins a transaction it abandons to the
  5 s idle timeout, and is unlinked 10 s later;
- **faults** on a schedule (a call that fails while one happens, or within 40 s after, is the
  fault's; any other failure is counted apart and must not happen): a kill
  of every client backend (every 3 min), a PostgreSQL restart (minute 5, then every 10), a
  NATS restart (minute 8, then every 10), replica 2 SIGKILLed and started again (minute 11,
  then every 10).

Each minute: each replica's RSS, open fds, asyncio tasks and metric series (by family, and
the links they name), PostgreSQL client connections,
the bucket's messages and bytes, calls, p50/p99 by call, errors inside and outside fault
windows, tokens lost. Writes `bench/results/soak-<time>.json` and `.png`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import nats

from devkit.local_nats import RestartableNats, free_port, restartable_nats
from devkit.local_postgres import running_postgres
from devkit.provider_harness import Caller
from host_shim.control_interface import serve_control
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.sqldb.statement_store import bucket_name
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient

RESULTS = Path(__file__).resolve().parent / "results"
MINUTES = float(os.environ.get("SOAK_MINUTES", "20"))
# A failed call is the fault's when a fault happened while it ran or up to this many seconds
# before it began: longer than a call's 30 s result timeout, so a call lost in the fault (and
# the commit of its transaction, idle meanwhile) counts as injected, not as another error.
FAULT_WINDOW = 40.0
STEADY = 4
LINK_LABEL = re.compile(r'link="([^"]*)"')
TASKS_GAUGE = "sqldb_postgres_asyncio_tasks "


@dataclass
class Minute:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    injected_errors: int = 0
    other_errors: list[str] = field(default_factory=list)
    tokens_lost: int = 0


@dataclass
class Soak:
    started: float = field(default_factory=time.monotonic)
    fault_times: list[float] = field(default_factory=list)  # time.monotonic() of each fault
    minute: Minute = field(default_factory=Minute)
    faults: list[tuple[float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fault(self, what: str) -> None:
        self.faults.append((round(self.elapsed(), 1), what))
        self.fault_times.append(time.monotonic())

    def record(self, kind: str, seconds: float, result: Any) -> None:
        if isinstance(result, Ok):
            self.minute.latencies[kind].append(seconds)
            return
        text = str(getattr(getattr(result, "value", None), "tag", result))
        if "unknown-prepared-query" in text:
            self.minute.tokens_lost += 1
        ended = time.monotonic()
        began = ended - seconds
        if any(began - FAULT_WINDOW <= at <= ended for at in self.fault_times[-8:]):
            self.minute.injected_errors += 1
        else:
            self.minute.other_errors.append(f"{kind}: {str(result)[:200]}")


class Replica:
    def __init__(self, host: LatticeHost, number: int, logs: Path) -> None:
        self.port = free_port()
        self.log = open(logs / f"replica-{number}.log", "ab")  # noqa: SIM115 - closed in stop
        config = {"METRICS_PORT": str(self.port)}
        self.host = host  # its links are the lattice's: a (re)started replica gets them
        self.process = ProviderProcess(
            host, log_file=self.log, config=config, link_definitions=list(host.links.values())
        )

    def restart(self) -> None:
        """SIGKILL, then started again as a host does: with the links of the moment."""
        self.process.kill()
        self.process.host_data = replace(
            self.process.host_data, link_definitions=list(self.host.links.values())
        )
        self.process.start()

    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def sample(self) -> dict[str, Any]:
        status = Path(f"/proc/{self.pid()}/status").read_text()
        rss_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        fds = len(os.listdir(f"/proc/{self.pid()}/fd"))
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        # Which families hold the series, and how many links they name: growth shows its cause.
        families = Counter(line.split("{")[0].split(" ")[0] for line in lines)
        links = {match.group(1) for line in lines if (match := LINK_LABEL.search(line))}
        tasks = [line.split()[-1] for line in lines if line.startswith(TASKS_GAUGE)]
        return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "series": len(lines),
                "tasks": int(float(tasks[0])) if tasks else None, "links_in_series": len(links),
                "families": dict(sorted(families.items()))}  # fmt: skip


async def _quiet(error: Exception) -> None:
    """The soak's own connection through a NATS restart: no traceback per reconnect try."""


async def _timed(soak: Soak, kind: str, call: Any) -> Any:
    started = time.perf_counter()
    try:
        result = await call
    except Exception as exc:  # a call timed out at the host side (a fault)
        result = exc
    soak.record(kind, time.perf_counter() - started, result)
    if not isinstance(result, Ok):
        await asyncio.sleep(0.2)  # a failing call is not retried in a tight loop
    return result


async def _steady(soak: Soak, caller: Caller, stop: asyncio.Event) -> None:
    token = None
    while not stop.is_set():
        if token is None:
            prepared = await _timed(soak, "prepare", caller.prepare(
                "INSERT INTO soak (who, at) VALUES ($1, now())"))  # fmt: skip
            token = prepared.value if isinstance(prepared, Ok) else None
            if token is None:
                await asyncio.sleep(0.5)
                continue
        result = await _timed(soak, "exec", caller.exec(token, [Case("text", caller.source_id)]))
        if not isinstance(result, Ok) and "unknown-prepared-query" in str(result):
            token = None
        # The newest rows by primary key: its cost stays flat while the table grows.
        await _timed(soak, "query", caller.query(
            "SELECT id, who, at FROM soak ORDER BY id DESC LIMIT 10"))  # fmt: skip
        begun = await _timed(soak, "begin", caller.begin())
        if isinstance(begun, Ok):
            tx = begun.value
            await _timed(soak, "tx_query", caller.tx_query(tx, "SELECT 1"))
            await _timed(soak, "commit", caller.commit(tx))


async def _churn(soak: Soak, host: LatticeHost, nc: Any, client: WrpcClient, config: dict[str, str],
                 stop: asyncio.Event) -> None:  # fmt: skip
    churn_config = {**config, "POSTGRES_MAX_STATEMENTS": "20",
                    "POSTGRES_TRANSACTION_IDLE_TIMEOUT": "5"}  # fmt: skip
    number = 0
    pending: list[asyncio.Task[None]] = []

    async def one(name: str) -> None:
        await host.put_link(nc, host.link_definition(name, churn_config))
        caller = Caller(client, name)
        await asyncio.sleep(1)  # the put reaches both replicas
        for n in range(40):
            prepared = await _timed(soak, "churn_prepare", caller.prepare(
                f"SELECT {n} AS n{uuid.uuid4().hex[:6]}, $1::int4"))  # fmt: skip
            if isinstance(prepared, Ok) and n % 8 == 0:
                await _timed(soak, "churn_exec", caller.exec(prepared.value, [Case("int4", n)]))
        await _timed(soak, "churn_begin", caller.begin())  # abandoned to the idle timeout
        await asyncio.sleep(10)
        await host.delete_link(nc, name)

    while not stop.is_set():
        number += 1
        pending.append(asyncio.create_task(one(f"churn-{number:06d}")))
        pending = [task for task in pending if not task.done()]
        await asyncio.sleep(2)
    await asyncio.gather(*pending, return_exceptions=True)


async def _faults(soak: Soak, nats_server: RestartableNats, pg: Any, replicas: list[Replica],
                  admin_dsn: str, stop: asyncio.Event) -> None:  # fmt: skip
    minute = 0
    while not stop.is_set():
        await asyncio.sleep(60)
        minute += 1
        if minute % 3 == 0:
            soak.fault("backends killed")
            admin = await asyncpg.connect(admin_dsn)
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE backend_type = 'client backend'"
                                " AND pid <> pg_backend_pid()")  # fmt: skip
            await admin.close()
        if minute % 10 == 5 and pg.restart is not None:
            soak.fault("PostgreSQL restarted")
            await asyncio.to_thread(pg.restart)
        if minute % 10 == 8:
            soak.fault("NATS restarted")
            await asyncio.to_thread(nats_server.restart)
        if minute % 10 == 1 and minute > 1:
            soak.fault("replica 2 killed and started again")
            replicas[1].restart()


async def _sample(soak: Soak, replicas: list[Replica], admin_dsn: str, nc: Any,
                  bucket: str) -> dict[str, Any]:  # fmt: skip
    minute, soak.minute = soak.minute, Minute()
    admin = await asyncpg.connect(admin_dsn)
    try:
        connections = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
    finally:
        await admin.close()
    try:
        info = await nc.jetstream().stream_info(f"KV_{bucket}")
        stored = {"bucket_messages": info.state.messages, "bucket_bytes": info.state.bytes}
    except Exception as exc:
        stored = {"bucket_error": str(exc)[:100]}
    calls = {}
    for kind, values in sorted(minute.latencies.items()):
        ordered = sorted(values)
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        calls[kind] = {"calls": len(ordered), "p99_ms": round(p99 * 1e3, 2),
                       "p50_ms": round(statistics.median(ordered) * 1e3, 2)}  # fmt: skip
    sample: dict[str, Any] = {
        "minute": round(soak.elapsed() / 60, 1),
        "replicas": [],
        "pg_connections": connections,
        **stored,
        "calls": calls,
        "injected_errors": minute.injected_errors,
        "other_errors": len(minute.other_errors),
        "other_error_examples": minute.other_errors[:5],
        "tokens_lost": minute.tokens_lost,
    }
    for replica in replicas:
        try:
            sample["replicas"].append(replica.sample())
        except (OSError, StopIteration) as exc:  # restarting
            sample["replicas"].append({"error": str(exc)[:100]})
    return sample


async def soak(minutes: float) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="soak-logs-"))
    print(f"  replica logs: {logs}", flush=True)
    with restartable_nats() as nats_server, running_postgres(own=True) as pg:
        database = await pg.create_database("soak")
        admin_dsn = pg.dsn(database)
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(
            "CREATE TABLE soak (id bigserial PRIMARY KEY, who text, at timestamptz)"
        )
        await admin.close()
        host = LatticeHost(nats_server.url)
        config = pg.link_config(database)
        steady = [host.link_definition(f"steady-{n}", config) for n in range(STEADY)]
        host.links.update({(link["source_id"], "default"): link for link in steady})
        replicas = [Replica(host, n, logs) for n in (1, 2)]  # the links in HostData
        nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.5, error_cb=_quiet)  # fmt: skip
        for replica in replicas:
            replica.process.start()
            await replica.process.wait_healthy(nc)
        client = WrpcClient(nc, host.prefix, result_timeout=30)
        await client.start()
        await serve_control(nc, host)  # links put or deleted in a NATS restart come back
        callers = [Caller(client, link["source_id"]) for link in steady]
        await asyncio.sleep(1)
        state, stop = Soak(), asyncio.Event()
        bucket = bucket_name(host.lattice, host.provider_id)
        samples = [await _sample(state, replicas, admin_dsn, nc, bucket)]
        workers = [asyncio.create_task(_steady(state, c, stop)) for c in callers]
        workers.append(asyncio.create_task(_churn(state, host, nc, client, config, stop)))
        workers.append(asyncio.create_task(
            _faults(state, nats_server, pg, replicas, pg.dsn(), stop)))  # fmt: skip
        try:
            while state.elapsed() < minutes * 60:
                await asyncio.sleep(min(60, minutes * 60 - state.elapsed() + 0.01))
                sample = await _sample(state, replicas, admin_dsn, nc, bucket)
                samples.append(sample)
                rss = [r.get("rss_mb") for r in sample["replicas"]]
                tasks = [r.get("tasks") for r in sample["replicas"]]
                exec_p99 = sample["calls"].get("exec", {}).get("p99_ms")
                print(f"  minute {sample['minute']:5.1f}: rss {rss} MB, tasks {tasks}, bucket "
                      f"{sample.get('bucket_messages')} msgs, pg {sample['pg_connections']} conns, "
                      f"exec p99 {exec_p99} ms, errors {sample['injected_errors']} injected / "
                      f"{sample['other_errors']} other, tokens lost {sample['tokens_lost']}",
                      flush=True)  # fmt: skip
        finally:
            stop.set()
            await asyncio.wait(workers, timeout=30)
            await client.close()
            await nc.close()
            for replica in replicas:
                replica.process.kill()
                replica.log.close()
    return {"minutes": minutes, "faults": state.faults, "samples": samples}


def _chart(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = document["samples"]
    minutes = [s["minute"] for s in samples]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=100)
    for index in (0, 1):
        axes[0][0].plot(minutes, [s["replicas"][index].get("rss_mb") for s in samples],
                        label=f"replica {index + 1}")  # fmt: skip
        axes[0][1].plot(minutes, [s["replicas"][index].get("series") for s in samples],
                        label=f"replica {index + 1} series")  # fmt: skip
    axes[0][0].set_title("RSS (MB)")
    axes[0][1].set_title("Prometheus series")
    axes[1][0].plot(minutes, [s.get("bucket_messages") for s in samples], label="messages")
    axes[1][0].plot(minutes, [s["pg_connections"] for s in samples], label="pg connections")
    axes[1][0].set_title("bucket messages, PostgreSQL connections")
    for kind in ("exec", "query", "commit"):
        axes[1][1].plot(minutes, [s["calls"].get(kind, {}).get("p99_ms") for s in samples],
                        label=f"{kind} p99")  # fmt: skip
    axes[1][1].set_title("p99 (ms) by minute")
    for row in axes:
        for ax in row:
            ax.set_xlabel("minute")
            ax.legend(fontsize=7)
            for at, _ in document["faults"]:
                ax.axvline(at / 60, color="#ddd", linewidth=0.5)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    print(f"soak: {MINUTES:g} minutes (SOAK_MINUTES), a line a minute", flush=True)
    document = asyncio.run(soak(MINUTES))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{when}.json"
    path.write_text(json.dumps(document, indent=1) + "\n")
    _chart(document, path.with_suffix(".png"))
    samples = document["samples"]
    print(f"wrote {path} and {path.with_suffix('.png').name}")
    print(
        f"other errors: {sum(s['other_errors'] for s in samples)}, "
        f"tokens lost: {sum(s['tokens_lost'] for s in samples)}"
    )


if __name__ == "__main__":
    main()
