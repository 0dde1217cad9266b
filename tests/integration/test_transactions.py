"""Interactive transactions, each semantic point of ../shared/spec/transactions.md, against the
provider as a child process, real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from devkit.provider_harness import Caller, RunningProvider, linked_caller, values_of
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from tests.waiting import until


def table() -> str:
    return f"tx_{uuid.uuid4().hex[:10]}"


async def setup(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str,
    **config: str,
) -> tuple[Caller, str]:  # fmt: skip
    link_config = {**postgres_server.link_config(database), **config}
    caller = await linked_caller(provider, nc, client, link_config)
    name = table()
    assert await caller.batch(f"CREATE TABLE {name} (id int PRIMARY KEY, v int)") == Ok(None)
    return caller, name


async def count(caller: Caller, name: str) -> int:
    result = await caller.query(f"SELECT count(*)::int4 FROM {name}")
    assert isinstance(result, Ok), result
    return int(values_of(result.value)[0][0].value)


def error_tag(result: Any) -> str:
    assert isinstance(result, Err), result
    return str(result.value.tag)


async def test_writes_are_seen_inside_and_only_after_commit_outside(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    begun = await caller.begin()
    assert isinstance(begun, Ok) and begun.value.startswith("tx_")
    tx = begun.value
    assert await caller.tx_query(tx, f"INSERT INTO {name} VALUES (1, 10)") == Ok([])
    inside = await caller.tx_query(tx, f"SELECT v FROM {name} WHERE id = $1", [Case("int4", 1)])
    assert isinstance(inside, Ok) and values_of(inside.value) == [[Case("int4", 10)]]
    assert await count(caller, name) == 0  # autocommit calls do not see it yet
    assert await caller.commit(tx) == Ok(None)
    assert await count(caller, name) == 1
    # Ended: the token is gone; rollback stays idempotent for its component.
    assert error_tag(await caller.tx_query(tx, "SELECT 1")) == "unknown-transaction"
    assert await caller.rollback(tx) == Ok(None)


async def test_rollback_undoes_and_prepared_tokens_work_inside(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    insert = await caller.prepare(f"INSERT INTO {name} VALUES ($1, $2)")
    assert isinstance(insert, Ok)
    tx = (await caller.begin()).value
    for i in range(3):
        assert await caller.tx_exec(tx, insert.value, [Case("int4", i), Case("int4", i)]) == Ok(1)
    unknown = await caller.tx_exec(tx, "pstmt-no-such-token", [])
    assert error_tag(unknown) == "query-error" and unknown.value.value.tag == "invalid-query"
    assert "pstmt-no-such-token" in unknown.value.value.value
    assert await caller.rollback(tx) == Ok(None)
    assert await caller.rollback(tx) == Ok(None)  # idempotent
    assert await count(caller, name) == 0


async def test_a_failed_statement_aborts_until_rollback(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    tx = (await caller.begin()).value
    assert await caller.tx_query(tx, f"INSERT INTO {name} VALUES (1, 1)") == Ok([])
    duplicate = await caller.tx_query(tx, f"INSERT INTO {name} VALUES (1, 2)")
    assert error_tag(duplicate) == "query-error" and "23505" in duplicate.value.value.value
    after = await caller.tx_query(tx, "SELECT 1")
    assert error_tag(after) == "query-error" and "25P02" in after.value.value.value
    committed = await caller.commit(tx)  # commit after an error rolls back
    assert error_tag(committed) == "query-error" and "23505" in committed.value.value.value
    assert await count(caller, name) == 0
    assert error_tag(await caller.commit(tx)) == "unknown-transaction"


async def test_read_only_refuses_writes(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    tx = (await caller.begin("repeatable-read", read_only=True)).value
    assert isinstance(await caller.tx_query(tx, f"SELECT * FROM {name}"), Ok)
    refused = await caller.tx_query(tx, f"INSERT INTO {name} VALUES (1, 1)")
    assert error_tag(refused) == "query-error" and "25006" in refused.value.value.value
    level = await caller.tx_query(tx, "SELECT current_setting('transaction_isolation')")
    assert "25P02" in level.value.value.value  # aborted by the refusal
    assert await caller.rollback(tx) == Ok(None)


async def test_write_skew_under_serializable_fails_exactly_one(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    assert await caller.batch(f"INSERT INTO {name} VALUES (1, 1), (2, 1)") == Ok(None)
    first = (await caller.begin("serializable")).value
    second = (await caller.begin("serializable")).value
    # Each reads both doctors on call, then takes one off: together they break the invariant.
    for tx in (first, second):
        assert isinstance(await caller.tx_query(tx, f"SELECT sum(v) FROM {name}"), Ok)
    assert await caller.tx_query(first, f"UPDATE {name} SET v = 0 WHERE id = 1") == Ok([])
    assert await caller.tx_query(second, f"UPDATE {name} SET v = 0 WHERE id = 2") == Ok([])
    outcomes = [await caller.commit(first), await caller.commit(second)]
    assert outcomes[0] == Ok(None)
    assert error_tag(outcomes[1]) == "serialization-failure"
    assert "40001" in outcomes[1].value.value
    result = await caller.query(f"SELECT sum(v)::int4 FROM {name}")
    assert values_of(result.value) == [[Case("int4", 1)]]


async def test_another_component_cannot_use_the_token(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    owner, name = await setup(provider, nc, client, postgres_server, database)
    other = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    tx = (await owner.begin()).value
    assert await owner.tx_query(tx, f"INSERT INTO {name} VALUES (1, 1)") == Ok([])
    for attempt in (
        other.tx_query(tx, f"DELETE FROM {name}"),
        other.commit(tx),
        other.rollback(tx),
    ):
        assert error_tag(await attempt) == "unknown-transaction"
    assert await owner.commit(tx) == Ok(None)  # untouched by the attempts
    assert await count(owner, name) == 1
    forged = tx[:-4] + ("AAAA" if not tx.endswith("AAAA") else "BBBB")
    assert error_tag(await owner.tx_query(forged, "SELECT 1")) == "unknown-transaction"


async def test_the_limit_leaves_connections_for_autocommit_calls(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, _ = await setup(provider, nc, client, postgres_server, database,
                            POSTGRES_POOL_SIZE="4")  # fmt: skip
    held = [(await caller.begin()).value for _ in range(2)]  # half the pool by default
    refused = await caller.begin()
    assert refused == Err(Case("too-many-transactions", 2))
    calls = await asyncio.gather(*(caller.query("SELECT pg_sleep(0.05)") for _ in range(8)))
    assert all(isinstance(result, Ok) for result in calls)
    assert await caller.commit(held[0]) == Ok(None)
    again = await caller.begin()
    assert isinstance(again, Ok)
    for tx in (held[1], again.value):
        assert await caller.rollback(tx) == Ok(None)


async def test_calls_on_one_token_are_serialised(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    tx = (await caller.begin()).value
    results = await asyncio.gather(*(
        caller.tx_query(tx, f"INSERT INTO {name} VALUES ($1, $1)", [Case("int4", i)])
        for i in range(40)
    ))  # fmt: skip
    assert all(result == Ok([]) for result in results), results
    assert await caller.commit(tx) == Ok(None)
    assert await count(caller, name) == 40


async def test_idle_and_open_too_long_are_rolled_back(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database,
                               POSTGRES_POOL_SIZE="1", POSTGRES_MAX_TRANSACTIONS="1",
                               POSTGRES_TRANSACTION_IDLE_TIMEOUT="0.6")  # fmt: skip
    idle = (await caller.begin()).value
    assert await caller.tx_query(idle, f"INSERT INTO {name} VALUES (1, 1)") == Ok([])
    await asyncio.sleep(1.0)  # idle for longer than the timeout: only the provider acts here
    late = await caller.tx_query(idle, "SELECT 1")
    assert (
        error_tag(late) == "timed-out" and "POSTGRES_TRANSACTION_IDLE_TIMEOUT" in late.value.value
    )
    assert await count(caller, name) == 0  # rolled back
    assert isinstance(await caller.begin(), Ok)  # the one connection and slot came back

    # Never idle for long (the idle timeout is far away), but open for too long.
    caller, name = await setup(provider, nc, client, postgres_server, database,
                               POSTGRES_POOL_SIZE="2", POSTGRES_TRANSACTION_IDLE_TIMEOUT="30",
                               POSTGRES_TRANSACTION_MAX_DURATION="1.5")  # fmt: skip
    busy = (await caller.begin()).value
    begun = time.monotonic()

    async def refused_insert() -> Any:
        await asyncio.sleep(0.05)
        result = await caller.tx_query(busy, f"INSERT INTO {name} VALUES ($1, 1)",
                                       [Case("int4", next(keys))])  # fmt: skip
        return result if isinstance(result, Err) else None

    keys = iter(range(10, 10_000))
    result = await until(refused_insert, "the max-duration rollback", seconds=15)
    assert time.monotonic() - begun >= 1.5  # not before the limit
    assert error_tag(result) == "timed-out"
    assert "POSTGRES_TRANSACTION_MAX_DURATION" in result.value.value
    assert await count(caller, name) == 0
    assert await caller.rollback(busy) == Ok(None)
    assert isinstance(await caller.begin(), Ok)


async def test_deleting_the_link_rolls_back(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, name = await setup(provider, nc, client, postgres_server, database)
    tx = (await caller.begin()).value
    assert await caller.tx_query(tx, f"INSERT INTO {name} VALUES (1, 1)") == Ok([])
    await provider.host.delete_link(nc, caller.source_id)
    for _ in range(50):
        if isinstance(await caller.query("SELECT 1"), Err):
            break
        await asyncio.sleep(0.05)
    await provider.host.put_link(
        nc, provider.host.link_definition(caller.source_id, postgres_server.link_config(database))
    )
    for _ in range(50):
        if isinstance(await caller.query("SELECT 1"), Ok):
            break
        await asyncio.sleep(0.05)
    assert await count(caller, name) == 0
    assert error_tag(await caller.tx_query(tx, "SELECT 1")) == "unknown-transaction"


async def test_a_link_moved_to_another_database_rolls_back_but_a_retuned_one_does_not(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any,
    database: str, make_database: Any,
) -> None:  # fmt: skip
    caller, name = await setup(provider, nc, client, postgres_server, database)
    kept = (await caller.begin()).value
    assert await caller.tx_query(kept, f"INSERT INTO {name} VALUES (1, 1)") == Ok([])
    # Same database, a new limit: the pool stays, and so does the transaction.
    retuned = {**postgres_server.link_config(database), "POSTGRES_MAX_TRANSACTIONS": "1"}
    await provider.host.put_link(nc, provider.host.link_definition(caller.source_id, retuned))
    for _ in range(100):  # applied once one open transaction is the limit
        probe = await caller.begin()
        if probe == Err(Case("too-many-transactions", 1)):
            break
        assert await caller.rollback(probe.value) == Ok(None)
        await asyncio.sleep(0.02)
    assert probe == Err(Case("too-many-transactions", 1))
    assert await caller.tx_query(kept, f"INSERT INTO {name} VALUES (2, 2)") == Ok([])
    assert await caller.commit(kept) == Ok(None)
    assert await count(caller, name) == 2

    moved = (await caller.begin()).value
    assert await caller.tx_query(moved, f"INSERT INTO {name} VALUES (3, 3)") == Ok([])
    other = postgres_server.link_config(make_database())
    await provider.host.put_link(nc, provider.host.link_definition(caller.source_id, other))
    for _ in range(50):
        if error_tag_or_none(await caller.tx_query(moved, "SELECT 1")) == "unknown-transaction":
            break
        await asyncio.sleep(0.05)
    assert error_tag(await caller.tx_query(moved, "SELECT 1")) == "unknown-transaction"
    await provider.host.put_link(
        nc, provider.host.link_definition(caller.source_id, postgres_server.link_config(database))
    )
    for _ in range(50):
        if isinstance(await caller.query(f"SELECT 1 FROM {name} LIMIT 1"), Ok):
            break
        await asyncio.sleep(0.05)
    assert await count(caller, name) == 2  # the moved transaction's row was rolled back


def error_tag_or_none(result: Any) -> str | None:
    return str(result.value.tag) if isinstance(result, Err) else None


async def test_shutdown_rolls_back_inside_the_hosts_budget(
    nats_url: str, nc: Any, postgres_server: Any, database: str
) -> None:
    own = RunningProvider(nats_url)  # its own: this test stops it
    await own.astart()
    own_client = WrpcClient(nc, own.host.prefix, result_timeout=30)
    await own_client.start()
    try:
        caller, name = await setup(own, nc, own_client, postgres_server, database)
        open_ones = [(await caller.begin()).value for _ in range(2)]
        for i, tx in enumerate(open_ones):
            assert await caller.tx_query(tx, f"INSERT INTO {name} VALUES ($1, 1)",
                                         [Case("int4", i)]) == Ok([])  # fmt: skip
        stop = await own.process.stop_like_host(nc)
        assert stop.reply == b"shutting down"  # within the host's window
    finally:
        await own_client.close()
        own.stop()
    connection = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        assert await connection.fetchval(f"SELECT count(*) FROM {name}") == 0
    finally:
        await connection.close()


async def test_a_setting_changed_inside_a_transaction_does_not_outlive_it(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller, _ = await setup(provider, nc, client, postgres_server, database,
                            POSTGRES_POOL_SIZE="1", POSTGRES_MAX_TRANSACTIONS="1")  # fmt: skip
    tx = (await caller.begin()).value
    assert isinstance(await caller.tx_query(tx, "SET application_name = 'leaked'"), Ok)
    assert await caller.commit(tx) == Ok(None)  # a plain SET outlives COMMIT in PostgreSQL
    shown = await caller.query("SELECT current_setting('application_name')")  # the one connection
    assert values_of(shown.value) == [[Case("text", "")]]  # the server's default, back


async def test_made_up_tokens_are_unknown_promptly(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    """Tokens a component makes up: wildcards and dots never reach a NATS subject, and a
    well-formed one naming a replica that does not exist is answered within the bound."""
    caller, _ = await setup(provider, nc, client, postgres_server, database)
    for forged in ("tx_a.>*_x", "tx__", "tx_0123456789ab_nope", "x" * 5000, ""):
        started = time.perf_counter()
        results = await asyncio.gather(*(caller.tx_query(forged, "SELECT 1") for _ in range(20)),
                                       caller.commit(forged))  # fmt: skip
        assert all(error_tag(r) == "unknown-transaction" for r in results), (forged, results)
        assert time.perf_counter() - started < 3.0
