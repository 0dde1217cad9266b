"""Behind a real PgBouncer (Debian's, 1.18) in transaction mode with its stock configuration.

Four server connections in front of the test PostgreSQL, `ignore_startup_parameters =
extra_float_digits` only: client connections really share server connections, so a statement
kept on one is missing on the next, names collide, and settings sent at startup are refused.
Every call must still be the one the guest asked for, answered as a direct link answers it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from devkit.local_pgbouncer import Bouncer, pgbouncer_binary, running_pgbouncer
from provider.postgres.service import PostgresService
from provider.wit.values import Case, Err, Ok
from tests import capabilities
from tests.pg_value_cases import ROUND_TRIPS


@pytest.fixture(scope="module")
def bouncer(postgres_server: Any) -> Iterator[Bouncer]:
    capabilities.require(
        "pgbouncer",
        pgbouncer_binary() is not None,
        "pgbouncer is not installed (apt-get install pgbouncer)",
    )
    with running_pgbouncer(postgres_server) as running:
        yield running


@pytest.fixture
async def service() -> AsyncIterator[PostgresService]:
    running = PostgresService()
    yield running
    await running.close()


async def _admin(postgres_server: Any, database: str) -> Any:
    return await asyncpg.connect(postgres_server.dsn(database))


async def _two_tables(postgres_server: Any, database: str) -> str:
    """`pooled_a` (one row, read by link a) and `log_b` (written by link b) in `database`."""
    admin = await _admin(postgres_server, database)
    try:
        await admin.execute(
            "CREATE TABLE pooled_a (id int PRIMARY KEY, v text); INSERT INTO pooled_a VALUES "
            "(1, 'a'); CREATE TABLE log_b (id serial PRIMARY KEY, v text)"
        )
    finally:
        await admin.close()
    return database


def _values(result: Any) -> list[list[Any]]:
    assert isinstance(result, Ok), result
    return [[column["value"] for column in row] for row in result.value]


async def test_connections_behind_the_bouncer_are_recognised(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, database: str
) -> None:
    await service.put_link("pooled", bouncer.link_config(database))
    await service.put_link("direct", postgres_server.link_config(database))
    assert isinstance(await service.query("pooled", "SELECT 1", []), Ok)
    assert isinstance(await service.query("direct", "SELECT 1", []), Ok)
    pooled = service.links["pooled"].pool.connections()
    direct = service.links["direct"].pool.connections()
    assert pooled and all(c.behind_pooler for c in pooled)
    assert direct and not any(c.behind_pooler for c in direct)
    # The link's key decides when given: "none" keeps named statements even here.
    await service.put_link("forced", {**bouncer.link_config(database), "POSTGRES_POOLER": "none"})
    assert isinstance(await service.query("forced", "SELECT 1", []), Ok)
    assert not any(c.behind_pooler for c in service.links["forced"].pool.connections())


async def test_two_links_prepare_exec_and_query_through_the_bouncer(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, make_database: Any
) -> None:
    database = await _two_tables(postgres_server, make_database())
    await service.put_link("a", bouncer.link_config(database))
    await service.put_link("b", bouncer.link_config(database))
    read = await service.prepare("a", "SELECT v FROM pooled_a WHERE id = $1")
    write = await service.prepare("b", "INSERT INTO log_b (v) VALUES ($1)")
    assert isinstance(read, Ok) and isinstance(write, Ok)
    for n in range(20):  # more calls than server connections: each lands anywhere
        assert await service.exec("b", write.value, [Case("text", f"b{n}")]) == Ok(1)
        assert await service.exec("a", read.value, [Case("int4", 1)]) == Ok(1)
        rows = await service.query("a", "SELECT v FROM pooled_a WHERE id = $1", [Case("int4", 1)])
        assert _values(rows) == [[Case("text", "a")]]
    count = await service.query("b", "SELECT count(*)::int4 FROM log_b", [])
    assert _values(count) == [[Case("int4", 20)]]


async def test_the_transactions_interface_keeps_its_server_connection(
    service: PostgresService, bouncer: Bouncer, make_database: Any
) -> None:
    database = make_database()
    await service.put_link("a", {**bouncer.link_config(database), "POSTGRES_POOL_SIZE": "8"})
    assert await service.query_batch("a", "CREATE TABLE t (n int)") == Ok()
    transactions = service.transactions
    insert = (await service.prepare("a", "INSERT INTO t VALUES ($1)")).value
    begun = await transactions.begin("a", {})
    assert isinstance(begun, Ok), begun
    token = begun.value
    for n in range(10):
        result = await transactions.exec("a", token, insert, [Case("int4", n)])
        assert result == Ok(1), result
    # Meanwhile other calls of the link run on the bouncer's other server connections.
    outside = await asyncio.gather(*(service.query("a", "SELECT count(*)::int4 FROM t", [])
                                     for _ in range(6)))  # fmt: skip
    assert all(_values(r) == [[Case("int4", 0)]] for r in outside)  # not committed yet
    inside = await transactions.query("a", token, "SELECT count(*)::int4 FROM t", [])
    assert _values(inside) == [[Case("int4", 10)]]
    assert await transactions.commit("a", token) == Ok(None)
    assert _values(await service.query("a", "SELECT count(*)::int4 FROM t", [])) == [
        [Case("int4", 10)]
    ]
    rolled = await transactions.begin("a", {})
    assert isinstance(rolled, Ok)
    assert await transactions.exec("a", rolled.value, insert, [Case("int4", 99)]) == Ok(1)
    assert await transactions.rollback("a", rolled.value) == Ok(None)
    assert _values(await service.query("a", "SELECT count(*)::int4 FROM t", [])) == [
        [Case("int4", 10)]
    ]


async def test_typed_errors_are_a_direct_links(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, database: str
) -> None:
    await service.put_link("pooled", bouncer.link_config(database))
    await service.put_link("direct", postgres_server.link_config(database))
    calls = [
        ("SELECT FROM nowhere_at_all", []),
        ("SELEC 1", []),
        ("SELECT $1::int4", [Case("text", "not a number")]),
        ("SELECT 1/0", []),
        ("SELECT $1::int4", [Case("int4", 1), Case("int4", 2)]),
    ]
    for sql, params in calls:
        pooled = await service.query("pooled", sql, params)
        direct = await service.query("direct", sql, params)
        assert isinstance(pooled, Err) and pooled == direct, (sql, pooled, direct)
    # Refused at COMMIT (a deferred constraint): the same error, and the connection lives on.
    deferred = "CREATE TABLE IF NOT EXISTS deferred (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
    await service.query_batch("direct", f"{deferred}; TRUNCATE deferred")
    twice = "INSERT INTO deferred VALUES (1), (1)"
    pooled = await service.query("pooled", twice, [])
    assert isinstance(pooled, Err) and "23505" in str(pooled)
    assert pooled == await service.query("direct", twice, [])
    assert isinstance(await service.query("pooled", "SELECT 1", []), Ok)
    token = await service.prepare("pooled", "SELECT $1::int4 + 1")
    assert isinstance(token, Ok)
    assert await service.exec("pooled", "pstmt-unknown", []) == Err(Case("unknown-prepared-query"))
    bad = await service.prepare("pooled", "SELECT * FROM nowhere_at_all")
    assert isinstance(bad, Err) and "42P01" in bad.value.value


async def test_the_statement_timeout_stops_statements_behind_the_bouncer(
    service: PostgresService, bouncer: Bouncer, make_database: Any
) -> None:
    database = make_database()
    config = {**bouncer.link_config(database), "POSTGRES_STATEMENT_TIMEOUT": "0.3"}
    await service.put_link("a", config)
    await service.query_batch(
        "a",
        "CREATE PROCEDURE nap() LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(5); END $$;"
        "CREATE TABLE naps (n int); CREATE PROCEDURE commit_then_nap() LANGUAGE plpgsql AS $$"
        " BEGIN INSERT INTO naps VALUES (1); COMMIT; PERFORM pg_sleep(5); END $$",
    )
    token = await service.prepare("a", "SELECT pg_sleep(5)")
    assert isinstance(token, Ok)
    for call in (
        service.query("a", "SELECT pg_sleep(5)", []),
        service.exec("a", token.value, []),
        service.query_batch("a", "SELECT pg_sleep(5)"),
        service.query_batch("a", "SELECT 1; SELECT pg_sleep(5)"),
        service.query("a", "CALL nap()", []),  # in the call's transaction: PostgreSQL stops it
    ):
        started = time.monotonic()
        result = await call
        assert isinstance(result, Err), result
        assert "57014" in str(result) and "POSTGRES_STATEMENT_TIMEOUT is 0.3 s" in str(result)
        assert time.monotonic() - started < 3
    # A procedure that COMMITs cannot run in the call's transaction: it runs alone, bounded by
    # the client's timeout; stopped that way it did commit first, and the guest is told the
    # outcome is unknown.
    started = time.monotonic()
    result = await service.query("a", "CALL commit_then_nap()", [])
    assert isinstance(result, Err) and "outcome is unknown" in str(result), result
    assert "POSTGRES_STATEMENT_TIMEOUT (0.3 s)" in str(result)
    assert time.monotonic() - started < 3
    assert _values(await service.query("a", "SELECT count(*)::int4 FROM naps", [])) == [
        [Case("int4", 1)]
    ]
    assert _values(await service.query("a", "SELECT 7::int4", [])) == [[Case("int4", 7)]]


async def test_values_match_a_direct_link_on_a_database_with_other_defaults(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, make_database: Any
) -> None:
    database = make_database()
    admin = await _admin(postgres_server, database)
    await admin.execute("CREATE EXTENSION hstore")
    for setting in ("IntervalStyle = 'iso_8601'", "DateStyle = 'SQL, DMY'",
                    "extra_float_digits = 0", "lc_monetary = 'C'"):  # fmt: skip
        await admin.execute(f'ALTER DATABASE "{database}" SET {setting}')
    await admin.close()
    await service.put_link("pooled", bouncer.link_config(database))
    await service.put_link("direct", postgres_server.link_config(database))
    checked = 0
    for case, sql_type, payload, _, _ in ROUND_TRIPS:
        if sql_type.startswith("xml") and not postgres_server.has_xml:
            continue
        sql = f"SELECT $1::{sql_type} AS v, ($1::{sql_type})::text AS t"
        pooled = await service.query("pooled", sql, [Case(case, payload)])
        direct = await service.query("direct", sql, [Case(case, payload)])
        assert isinstance(pooled, Ok) and pooled == direct, (case, pooled, direct)
        checked += 1
    text_forms = (
        "SELECT interval '1 day 2 hours 3 minutes 4.5 seconds', date '2026-12-07',"
        " 0.1::float8 + 0.2::float8, row(0.1::float8 + 0.2::float8, interval '1 month'),"
        " ARRAY[interval '1 day', NULL], 12.5::money, timestamp '2026-12-07 10:00'"
    )
    procedure = "CREATE PROCEDURE dated(INOUT d date, INOUT i interval) LANGUAGE plpgsql AS $$"
    await service.query_batch("direct", f"{procedure} BEGIN d := d + 1; END $$")
    call = "CALL dated('2026-12-07', '1 day 02:03:04.5')"
    called = await service.query("pooled", call, [])
    assert isinstance(called, Ok) and called == await service.query("direct", call, [])
    assert _values(called)[0][1] == Case("text", "1 day 02:03:04.5")
    pooled = await service.query("pooled", text_forms, [])
    assert pooled == await service.query("direct", text_forms, [])
    values = _values(pooled)[0]
    assert values[0] == Case("text", "1 day 02:03:04.5")  # not P1DT2H3M4.5S
    assert values[3] == Case("text", '(0.30000000000000004,"1 mon")')
    assert checked > 100


async def test_a_guests_settings_never_reach_another_client_of_the_bouncer(
    service: PostgresService, bouncer: Bouncer, database: str
) -> None:
    await service.put_link("a", bouncer.link_config(database))
    await service.put_link("b", bouncer.link_config(database))
    setter = await service.prepare("a", "SET search_path = nowhere")
    assert isinstance(setter, Ok)
    for _ in range(8):
        assert await service.exec("a", setter.value, []) == Ok(0)
        assert await service.query("a", "SELECT set_config('TimeZone', 'Asia/Tokyo', false)", [])
        shown = await service.query("b", "SELECT current_setting('search_path'),"
                                         " current_setting('TimeZone')", [])  # fmt: skip
        assert _values(shown)[0][0] == Case("text", '"$user", public')
        assert _values(shown)[0][1] != Case("text", "Asia/Tokyo")
    # A batch's session state (settings, a temporary table shadowing a real one, LISTEN) is
    # gone before the bouncer hands its server connection to anyone else.
    real = "CREATE TABLE shadowed (v text); INSERT INTO shadowed VALUES ('real')"
    assert await service.query_batch("b", real) == Ok()
    for _ in range(8):
        batch = ("SET search_path = nowhere, pg_catalog; CREATE TEMP TABLE shadowed (v text);"
                 " INSERT INTO shadowed VALUES ('fake'); LISTEN somewhere")  # fmt: skip
        assert await service.query_batch("a", batch) == Ok()
        seen = await asyncio.gather(*(service.query("b", "SELECT v FROM shadowed", [])
                                      for _ in range(6)))  # fmt: skip
        assert all(_values(r) == [[Case("text", "real")]] for r in seen), seen
    # The same for what a single statement leaves: a temporary table, a session lock taken in
    # a transaction that was rolled back.
    for _ in range(4):
        temp = await service.query("a", "CREATE TEMP TABLE shadowed (v text)", [])
        assert isinstance(temp, Ok), temp
        seen = await asyncio.gather(*(service.query("b", "SELECT v FROM shadowed", [])
                                      for _ in range(6)))  # fmt: skip
        assert all(_values(r) == [[Case("text", "real")]] for r in seen), seen
        tx = (await service.transactions.begin("a", {})).value
        locked = await service.transactions.query("a", tx, "SELECT pg_advisory_lock(42)", [])
        assert isinstance(locked, Ok), locked
        assert await service.transactions.rollback("a", tx) == Ok(None)
        for _ in range(6):  # one after another: each holds the lock until its call ends
            free = await service.query("b", "SELECT pg_try_advisory_xact_lock(42)", [])
            assert _values(free) == [[Case("bool", True)]], free
    # A batch that leaves its transaction open: rolled back with the reset in one message.
    for _ in range(4):
        assert await service.query_batch("a", "SET search_path = nowhere; BEGIN") == Ok()
        shown = await service.query("b", "SELECT current_setting('search_path')", [])
        assert _values(shown) == [[Case("text", '"$user", public')]], shown
    assert await service.query_batch("a", "DISCARD ALL") == Ok()  # alone: not in a block
    assert await service.query_batch("a", "CALL nothing(); SET search_path = nowhere") != Ok()
    assert await service.query_batch("a", "SELECT 1 -- a trailing comment") == Ok()


async def _killer(postgres_server: Any, database: str, stop: asyncio.Event) -> int:
    """Terminates one of the bouncer's server connections every ~150 ms; returns how many."""
    admin = await _admin(postgres_server, "postgres")
    killed = 0
    try:
        while not stop.is_set():
            await asyncio.sleep(0.15)
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
                " ORDER BY random() LIMIT 1",
                database,
            )
            if pid is not None and await admin.fetchval("SELECT pg_terminate_backend($1)", pid):
                killed += 1
    finally:
        await admin.close()
    return killed


async def test_a_load_with_killed_backends_and_discard_all_runs_only_what_was_asked(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, make_database: Any
) -> None:
    """32 callers on two links (hot prepared statements, parameterised queries, a guest's
    DISCARD ALL now and then) while server connections are killed: never "does not exist",
    never "already exists", never a read that ran as another statement."""
    database = make_database()
    admin = await _admin(postgres_server, database)
    await admin.execute(
        "CREATE TABLE pooled_a (id int PRIMARY KEY, v text);"
        "INSERT INTO pooled_a SELECT g, 'a' || g FROM generate_series(1, 50) g;"
        "CREATE TABLE log_b (id serial PRIMARY KEY, v text NOT NULL)"
    )
    await admin.close()
    await service.put_link("a", bouncer.link_config(database))
    await service.put_link("b", bouncer.link_config(database))
    read_sql = "SELECT v FROM pooled_a WHERE id = $1"
    read = (await service.prepare("a", read_sql)).value
    write = (await service.prepare("b", "INSERT INTO log_b (v) VALUES ($1)")).value
    outcomes: Counter[str] = Counter()
    wrong: list[Any] = []
    acknowledged: list[str] = []
    deadline = time.monotonic() + 8

    async def caller(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            key = rng.randrange(1, 51)
            kind = rng.choice(("exec-read", "query", "write", "write", "discard"))
            if kind == "exec-read":
                result = await service.exec("a", read, [Case("int4", key)])
                good = result == Ok(1)
            elif kind == "query":
                result = await service.query("a", read_sql, [Case("int4", key)])
                good = isinstance(result, Ok) and _values(result) == [[Case("text", f"a{key}")]]
            elif kind == "write":
                value = f"b{n}-{rng.random()}"
                result = await service.exec("b", write, [Case("text", value)])
                good = result == Ok(1)
                if good:
                    acknowledged.append(value)
            else:
                result = await service.query_batch(rng.choice("ab"), "DISCARD ALL")
                good = result == Ok()
            if good:
                outcomes["ok"] += 1
            elif isinstance(result, Ok):
                wrong.append((kind, key, result))
            else:
                outcomes[_error_kind(kind, str(result))] += 1

    stop = asyncio.Event()
    killer = asyncio.create_task(_killer(postgres_server, database, stop))
    await asyncio.gather(*(caller(n) for n in range(32)))
    stop.set()
    killed = await killer
    print(f"\nbehind the bouncer: {dict(outcomes)}, {killed} server connections killed")
    assert not wrong, wrong[:5]
    assert outcomes["does not exist"] == 0 and outcomes["already exists"] == 0
    assert killed >= 10 and outcomes["ok"] > 1000
    # No error a direct link would not give as well: a write whose COMMIT was lost is of
    # unknown outcome, and a batch whose connection died is an error, there as here.
    assert set(outcomes) <= {"ok", "outcome unknown", "batch lost"}, outcomes
    admin = await _admin(postgres_server, database)
    try:
        written = {row["v"] for row in await admin.fetch("SELECT v FROM log_b")}
    finally:
        await admin.close()
    assert set(acknowledged) <= written  # nothing acknowledged is lost
    assert len(written) <= len(acknowledged) + outcomes["outcome unknown"]
    assert all(v.startswith("b") for v in written)  # no read ever wrote


def _error_kind(call: str, text: str) -> str:
    for kind in ("does not exist", "already exists", "outcome is unknown"):
        if kind in text:
            return "outcome unknown" if kind == "outcome is unknown" else kind
    if call == "discard" and "connection was closed in the middle of operation" in text:
        # A batch is never run twice (it may write): its connection lost mid-flight is an
        # error, as on a direct link ("terminating connection due to administrator command").
        return "batch lost"
    return f"{call}: {text[:160]}"


async def test_forced_named_statements_behind_the_bouncer_never_run_another_statement(
    service: PostgresService, bouncer: Bouncer, postgres_server: Any, make_database: Any
) -> None:
    """POSTGRES_POOLER=none behind a transaction pooler is a misconfiguration; calls may fail,
    but names are never shared, so a read never runs as another client's statement."""
    database = await _two_tables(postgres_server, make_database())
    named = {**bouncer.link_config(database), "POSTGRES_POOLER": "none"}
    await service.put_link("a", named)
    await service.put_link("b", named)
    read = (await service.prepare("a", "SELECT v FROM pooled_a WHERE id = $1")).value
    write = (await service.prepare("b", "INSERT INTO log_b (v) VALUES ($1::text)")).value

    async def reads() -> list[Any]:
        return [await service.exec("a", read, [Case("int4", 1)]) for _ in range(40)]

    async def writes() -> list[Any]:
        return [await service.exec("b", write, [Case("text", "b")]) for _ in range(40)]

    results = await asyncio.gather(*(reads() for _ in range(6)), *(writes() for _ in range(6)))
    for result in (r for batch in results[:6] for r in batch):
        assert result == Ok(1) or isinstance(result, Err), result
    admin = await _admin(postgres_server, database)
    try:
        assert await admin.fetchval("SELECT count(*) FROM log_b WHERE v <> 'b'") == 0
        assert await admin.fetchval("SELECT count(*) FROM log_b") <= sum(
            r == Ok(1) for batch in results[6:] for r in batch
        ) + sum(isinstance(r, Err) for batch in results[6:] for r in batch)
    finally:
        await admin.close()


async def test_the_provider_process_serves_a_component_through_the_bouncer(
    provider: Any, nc: Any, client: Any, bouncer: Bouncer, make_database: Any
) -> None:
    """Over wRPC, as a host calls it: the four functions and the transactions interface."""
    from devkit.provider_harness import linked_caller, values_of

    database = make_database()
    caller = await linked_caller(provider, nc, client, bouncer.link_config(database))
    assert await caller.batch("CREATE TABLE t (id serial PRIMARY KEY, v text)") == Ok()
    token = await caller.prepare("INSERT INTO t (v) VALUES ($1)")
    assert isinstance(token, Ok), token
    for n in range(12):
        assert await caller.exec(token.value, [Case("text", f"v{n}")]) == Ok(1)
    tx = await caller.begin()
    assert isinstance(tx, Ok), tx
    assert await caller.tx_exec(tx.value, token.value, [Case("text", "in tx")]) == Ok(1)
    assert await caller.commit(tx.value) == Ok(None)
    rows = await caller.query("SELECT count(*)::int4, max(id) FROM t WHERE v LIKE $1", [
        Case("text", "%")
    ])  # fmt: skip
    assert isinstance(rows, Ok), rows
    assert values_of(rows.value) == [[Case("int4", 13), Case("int4", 13)]]
    wrong = await caller.query("SELECT * FROM missing_table")
    assert isinstance(wrong, Err) and wrong.value.tag == "invalid-query"
