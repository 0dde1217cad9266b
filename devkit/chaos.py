"""The seed's scenario, with faults: many callers prepare once and exec many times.

Used by tests/integration/test_statements_chaos.py (short runs) and `make chaos` (long run,
a report).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from devkit.provider_harness import Caller, wait_linked
from provider.wit.values import Case, Ok

INSERT = "INSERT INTO chaos (caller, seq) VALUES ($1, $2)"


@dataclass
class Outcome:
    acknowledged: set[tuple[int, int]] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    operations: int = 0
    kills: int = 0
    resets: int = 0
    restarts: int = 0
    seconds: float = 0.0

    def error_lines(self) -> list[str]:
        return [f"{count} x {text}" for text, count in self.errors.most_common()]


async def link_fresh_database(
    provider: Any, server: Any, client: Any, nc: Any, link: str, pool_size: int = 4
) -> tuple[Caller, str, str]:
    """A new database with the chaos table, linked for `link`; (caller, admin dsn, database)."""
    database = await server.create_database("chaos")
    admin_dsn = server.dsn(database)
    await create_table(admin_dsn)
    config = {**server.link_config(database), "POSTGRES_POOL_SIZE": str(pool_size)}
    await provider.host.put_link(nc, provider.host.link_definition(link, config))
    caller = Caller(client, link)
    await wait_linked(caller)
    return caller, admin_dsn, database


async def create_table(admin_dsn: str) -> None:
    connection = await asyncpg.connect(admin_dsn, ssl=False)
    await connection.execute(
        "DROP TABLE IF EXISTS chaos; "
        "CREATE TABLE chaos (caller int4, seq int4, PRIMARY KEY (caller, seq))"
    )
    await connection.close()


async def stored_rows(admin_dsn: str) -> set[tuple[int, int]]:
    connection = await asyncpg.connect(admin_dsn, ssl=False)
    rows = await connection.fetch("SELECT caller, seq FROM chaos")
    await connection.close()
    return {(r["caller"], r["seq"]) for r in rows}


def _shape(text: str) -> str:
    """An error's text with the numbers taken out, to count errors by kind."""
    return re.sub(r"\d+", "N", text)[:160]


async def hammer(caller: Caller, callers: int, execs: int, outcome: Outcome) -> None:
    async def one(index: int) -> None:
        prepared = await caller.prepare(INSERT)
        if not isinstance(prepared, Ok):
            outcome.errors[_shape(f"prepare: {prepared.value}")] += 1
            return
        for seq in range(execs):
            result = await caller.exec(prepared.value, [Case("int4", index), Case("int4", seq)])
            outcome.operations += 1
            if isinstance(result, Ok) and result.value == 1:
                outcome.acknowledged.add((index, seq))
            else:
                outcome.errors[_shape(str(result.value))] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(callers)))
    outcome.seconds = time.perf_counter() - started


async def kill_backends(
    admin_dsn: str, database: str, outcome: Outcome, stop: asyncio.Event
) -> None:
    """pg_terminate_backend on a random connection of the database every 100-200 ms."""
    while not stop.is_set():
        await asyncio.sleep(random.uniform(0.1, 0.2))
        try:
            connection = await asyncpg.connect(admin_dsn, ssl=False)
            killed = await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY random() LIMIT 1) victims",
                database,
            )
            await connection.close()
            outcome.kills += int(killed or 0)
        except (OSError, asyncpg.PostgresError):
            pass  # during a restart


async def reset_sessions(caller: Caller, outcome: Outcome, stop: asyncio.Event) -> None:
    """The same guest resets its sessions through query-batch, phrased three ways."""
    phrasings = ["DISCARD ALL", "DEALLOCATE ALL", "DISCARD PLANS", "SELECT 1; DEALLOCATE ALL"]
    while not stop.is_set():
        result = await caller.batch(random.choice(phrasings))
        if not isinstance(result, Ok):
            outcome.errors[_shape(f"batch: {result.value}")] += 1
        outcome.resets += 1
        await asyncio.sleep(0.005)


async def restart_server(server: Any, outcome: Outcome, after: float) -> None:
    await asyncio.sleep(after)
    await asyncio.to_thread(server.restart)
    outcome.restarts += 1


def scrape(port: int) -> dict[str, float]:
    """The provider's Prometheus metrics, flattened to 'name{labels}' → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def sample(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample's value by metric name and labels (in any order); 0 when absent."""
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return value
    return 0.0


def by_cause(samples: dict[str, float], link: str) -> dict[str, int]:
    """Server-side prepares of one link, by cause."""
    found: dict[str, int] = {}
    for name, value in samples.items():
        if name.startswith("sqldb_postgres_statement_prepares_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', name))
            if labels.get("link") == link:
                found[labels["cause"]] = int(value)
    return found
