"""The invariant under faults: 32 concurrent transfer loops over 10 accounts for ~15 s while
PostgreSQL backends are killed every 200-400 ms. Money is never created or lost, every transfer
whose commit returned ok is there (its log row was written in the same transaction), nothing
else is (but a commit whose outcome was reported unknown), and no call hangs."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from devkit.local_nats import free_port
from devkit.provider_harness import (
    Caller,
    RunningProvider,
    values_of,
    wait_linked,
    wait_until_both_replicas_serve,
)
from host_shim.provider_process import ProviderProcess
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient

LOOPS, ACCOUNTS, INITIAL, SECONDS = 32, 10, 1_000, 15.0
CALL_BOUND = 10.0  # no call may take longer than this to answer


@dataclass
class Tally:
    committed: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    serialization_retries: int = 0
    lost: int = 0
    refused: int = 0
    kills: int = 0
    slowest: float = 0.0
    errors: list[Any] = field(default_factory=list)


async def bounded(tally: Tally, call: Any) -> Any:
    started = time.perf_counter()
    result = await asyncio.wait_for(call, CALL_BOUND)  # a hang fails the test here
    tally.slowest = max(tally.slowest, time.perf_counter() - started)
    return result


async def transfer_loop(caller: Caller, tally: Tally, stop: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop:
        source, target = rng.sample(range(1, ACCOUNTS + 1), 2)
        amount, transfer_id = rng.randint(1, 50), uuid.uuid4().hex
        begun = await bounded(tally, caller.begin("serializable"))
        if isinstance(begun, Err):
            tally.refused += 1  # too many open, or the database unreachable for a moment
            await asyncio.sleep(0.01)
            continue
        tx = begun.value
        outcome = await run_transfer(caller, tally, tx, source, target, amount, transfer_id)
        if outcome == "ok":
            tally.committed.add(transfer_id)
        elif outcome == "unknown":
            tally.unknown.add(transfer_id)


async def run_transfer(caller: Caller, tally: Tally, tx: str, source: int, target: int,
                       amount: int, transfer_id: str) -> str:  # fmt: skip
    statements = [
        ("SELECT balance FROM accounts WHERE id = $1", [Case("int4", source)]),
        ("UPDATE accounts SET balance = balance - $2 WHERE id = $1",
         [Case("int4", source), Case("int8", amount)]),
        ("UPDATE accounts SET balance = balance + $2 WHERE id = $1",
         [Case("int4", target), Case("int8", amount)]),
        ("INSERT INTO transfers VALUES ($1, $2, $3, $4)",
         [Case("text", transfer_id), Case("int4", source), Case("int4", target),
          Case("int8", amount)]),
    ]  # fmt: skip
    for sql, params in statements:
        result = await bounded(tally, caller.tx_query(tx, sql, params))
        if isinstance(result, Err):
            return await failed(caller, tally, tx, result)
        if sql.startswith("SELECT") and values_of(result.value)[0][0].value < amount:
            await bounded(tally, caller.rollback(tx))
            return "declined"
    committed = await bounded(tally, caller.commit(tx))
    if isinstance(committed, Ok):
        return "ok"
    if committed.value.tag == "commit-outcome-unknown":
        return "unknown"
    return await failed(caller, tally, tx, committed)


async def failed(caller: Caller, tally: Tally, tx: str, result: Err) -> str:
    tag = result.value.tag
    if tag == "serialization-failure":
        tally.serialization_retries += 1
    elif tag == "unexpected" and "connection was lost" in result.value.value:
        tally.lost += 1
    elif tag not in ("query-error", "unknown-transaction"):
        tally.errors.append(result)
    assert await bounded(tally, caller.rollback(tx)) == Ok(None)  # idempotent, always ok
    return "failed"


async def killer(admin: asyncpg.Connection, database: str, tally: Tally, stop: float) -> None:
    rng = random.Random(7)
    while time.monotonic() < stop:
        await asyncio.sleep(rng.uniform(0.2, 0.4))
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
            "ORDER BY random() LIMIT 1) victims",
            database,
        )
        tally.kills += int(killed or 0)


def forwarded_calls(metrics_port: int) -> int:
    """The replica's `sqldb_postgres_transactions_total{outcome="forwarded"}`, summed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
        text = page.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("sqldb_postgres_transactions_total{") and 'outcome="forwarded"' in line
    )


async def test_transfers_keep_the_total_while_backends_are_killed(
    nats_url: str, nc: Any, postgres_server: Any, database: str
) -> None:
    """Two replicas (calls spread across them, about half forwarded to the owner)."""
    ports = (free_port(), free_port())
    provider = RunningProvider(nats_url, config={"METRICS_PORT": str(ports[0])})
    await provider.astart()
    config = {**postgres_server.link_config(database), "POSTGRES_POOL_SIZE": "16",
              "POSTGRES_MAX_TRANSACTIONS": "12"}  # fmt: skip
    definition = provider.host.link_definition("app-bank", config)
    second = ProviderProcess(provider.host, host_id="NSECOND", link_definitions=[definition],
                             config={"METRICS_PORT": str(ports[1])})  # fmt: skip
    client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await client.start()
    try:
        await provider.host.put_link(nc, definition)
        second.start()
        await second.wait_healthy(nc)
        caller = Caller(client, "app-bank")
        await wait_linked(caller)
        await wait_until_both_replicas_serve(caller)
        await invariant_run(caller, postgres_server, database, ports)
    finally:
        second.kill()
        await client.close()
        provider.stop()


async def invariant_run(
    caller: Caller, postgres_server: Any, database: str, ports: tuple[int, int]
) -> None:
    setup = (
        "CREATE TABLE accounts (id int4 PRIMARY KEY, balance int8 NOT NULL); "
        "CREATE TABLE transfers (id text PRIMARY KEY, source int4, target int4, amount int8); "
        f"INSERT INTO accounts SELECT g, {INITIAL} FROM generate_series(1, {ACCOUNTS}) g"
    )
    assert await caller.batch(setup) == Ok(None)
    admin = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    tally = Tally()
    stop = time.monotonic() + SECONDS
    try:
        await asyncio.gather(
            killer(admin, database, tally, stop),
            *(transfer_loop(caller, tally, stop, seed) for seed in range(LOOPS)),
        )
        total = await admin.fetchval("SELECT sum(balance) FROM accounts")
        logged = {row["id"] for row in await admin.fetch("SELECT id FROM transfers")}
    finally:
        await admin.close()
    forwarded = sum(forwarded_calls(port) for port in ports)
    print(f"\ntransfers committed {len(tally.committed)}, outcome unknown {len(tally.unknown)}, "
          f"backends killed {tally.kills}, serialization retries "
          f"{tally.serialization_retries}, lost mid-transaction {tally.lost}, begins refused "
          f"{tally.refused}, forwarded calls {forwarded}, slowest call "
          f"{tally.slowest:.2f} s")  # fmt: skip
    assert total == ACCOUNTS * INITIAL
    assert tally.committed <= logged  # nothing acknowledged is lost
    assert logged <= tally.committed | tally.unknown  # nothing else is there
    assert tally.kills >= 20 and len(tally.committed) >= 30
    assert not tally.errors, tally.errors[:5]
    assert forwarded > 50  # the calls that reached the other replica were relayed
