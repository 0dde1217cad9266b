"""Hundreds of components on one small server (`python -m bench.tenants_bench`).

200 links (one per component, default settings) to one PostgreSQL started with
`max_connections` 60; every component makes 4 concurrent `SELECT pg_sleep(0.1)` calls, all at
once, through the provider's PostgreSQL service (in this process: the pooling is what is
measured, not NATS). Two rounds: `cold` (the links have no connection yet) and `warm` (right
after). A superuser connection samples the server's client backends every 10 ms for the peak.

Reports per round: calls answered ok, errors by kind (the server's refusal, the acquire
timeout, other), wall time, calls/s, p50/p99 latency and peak connections; writes
`bench/results/tenants-latest.json` and `.md`. `--dsn` measures an existing server instead
(its superuser), e.g. to compare another checkout of the provider on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

RESULTS = Path(__file__).resolve().parent / "results"


def _kind(error: str) -> str:
    if "53300" in error or "too many clients" in error or "slots are reserved" in error:
        return "refused_by_server"
    if "POSTGRES_ACQUIRE_TIMEOUT" in error:
        return "acquire_timeout"
    return "other"


async def _sample_peak(dsn: str, stop: asyncio.Event, peak: list[int]) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            count = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            peak[0] = max(peak[0], int(count))
            await asyncio.sleep(0.01)
    finally:
        await admin.close()


async def _round(service: Any, links: list[str], calls: int, sleep: float, dsn: str) -> dict:
    from provider.wit.values import Ok

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}

    async def one(link: str) -> None:
        started = time.perf_counter()
        result = await service.query(link, f"SELECT pg_sleep({sleep})", [])
        latencies.append(time.perf_counter() - started)
        if not isinstance(result, Ok):
            text = str(result.value.value)
            errors[_kind(text)] += 1
            examples.setdefault(_kind(text), text[:300])

    stop, peak = asyncio.Event(), [0]
    sampler = asyncio.create_task(_sample_peak(dsn, stop, peak))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await asyncio.gather(*(one(link) for link in links for _ in range(calls)))
    wall = time.perf_counter() - started
    stop.set()
    await sampler
    total = len(links) * calls
    ordered = sorted(latencies)
    return {
        "calls": total,
        "ok": total - sum(errors.values()),
        "errors": dict(errors),
        "error_examples": examples,
        "wall_s": round(wall, 3),
        "calls_per_s": round(total / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
        "peak_connections": peak[0],
    }


async def _measure(dsn: str, links: int, calls: int, sleep: float, share: bool) -> dict:
    from provider.postgres.service import PostgresService

    parts = urlsplit(dsn)
    admin = await asyncpg.connect(dsn)
    database = f"tenants_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        max_connections = await admin.fetchval("SHOW max_connections")
    finally:
        await admin.close()
    config = {
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USERNAME": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_DATABASE": database,
    }
    if share:
        config["POSTGRES_SHARE_CONNECTIONS_BY_URL"] = "true"
    service = PostgresService()
    names = [f"component-{n:03d}" for n in range(links)]
    for name in names:
        await service.put_link(name, config)
    try:
        rounds = {
            "cold": await _round(service, names, calls, sleep, dsn),
            "warm": await _round(service, names, calls, sleep, dsn),
        }
    finally:
        await service.close()
    budgets = getattr(service, "budgets", None)
    budget = [b.size for b in budgets.budgets()] if budgets is not None else None
    return {"max_connections": int(max_connections), "budget": budget, "rounds": rounds}


@contextlib.contextmanager
def _server(dsn: str | None, max_connections: int) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from devkit.local_postgres import running_postgres

    with running_postgres(own=True, max_connections=max_connections) as server:
        if server.kind != "machine":
            sys.exit("needs the machine's PostgreSQL (a small max_connections); see docs/testing")
        yield server.dsn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--calls", type=int, default=4, help="concurrent calls per link")
    parser.add_argument("--sleep", type=float, default=0.1, help="seconds each call sleeps")
    parser.add_argument("--max-connections", type=int, default=60)
    parser.add_argument("--dsn", help="an existing server's superuser DSN")
    parser.add_argument("--label", default="", help="a name for this run in the results")
    parser.add_argument(
        "--share", action="store_true", help="POSTGRES_SHARE_CONNECTIONS_BY_URL on every link"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the provider warns once per failed call
    with _server(args.dsn, args.max_connections) as dsn:
        result = asyncio.run(_measure(dsn, args.links, args.calls, args.sleep, args.share))
    result |= {
        "label": args.label,
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "links": args.links,
        "calls_per_link": args.calls,
        "sleep_s": args.sleep,
        "shared_by_url": args.share,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tenants-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# {args.links} links x {args.calls} concurrent pg_sleep({args.sleep}) calls, "
        f"max_connections {result['max_connections']} (budget {result['budget']})"
        + (", POSTGRES_SHARE_CONNECTIONS_BY_URL" if args.share else ""),
        "",
        "| round | ok | errors | wall s | calls/s | p50 ms | p99 ms | peak connections |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["rounds"].items():
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {name} | {r['ok']} | {errors} | {r['wall_s']} | {r['calls_per_s']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['peak_connections']} |"
        )
    (RESULTS / "tenants-latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for name, r in result["rounds"].items():
        for kind, text in r["error_examples"].items():
            print(f"{name} {kind}: {text}")


if __name__ == "__main__":
    main()
