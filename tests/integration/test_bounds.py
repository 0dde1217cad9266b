"""Nothing one component does can hurt another: statement and acquire time bounds, secrets
redacted everywhere, sessions that never pass between links on a shared pool, `"char"`.

Real NATS, real PostgreSQL, the provider as a child process (each bound tried over the wire).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from devkit.provider_harness import (
    EXEC,
    QUERY,
    Caller,
    RunningProvider,
    linked_caller,
    new_source_id,
    values_of,
)
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from tests import capabilities


async def test_a_char_value_goes_to_a_quoted_char_column_and_back(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    table = f"chars_{uuid.uuid4().hex[:8]}"
    assert isinstance(await caller.batch(f'CREATE TABLE {table} (v "char", a "char"[])'), Ok)
    token = await caller.prepare(f"INSERT INTO {table} VALUES ($1, $2)")
    assert isinstance(token, Ok)
    inserted = await caller.exec(
        token.value, [Case("char", (1, b"x")), Case("char-array", [(1, b"y"), (1, b"z")])]
    )
    assert inserted == Ok(1)
    rows = await caller.query(f"SELECT v, a FROM {table}")
    assert isinstance(rows, Ok)
    assert values_of(rows.value) == [
        [Case("char", (1, b"x")), Case("char-array", [(1, b"y"), (1, b"z")])]
    ]


def test_timeouts_past_what_postgresql_holds_are_refused() -> None:
    from provider.postgres.config import ConfigError, settings_from_config

    config = {"POSTGRES_HOST": "h", "POSTGRES_PORT": "1", "POSTGRES_USERNAME": "u",
              "POSTGRES_PASSWORD": "p", "POSTGRES_DATABASE": "d"}  # fmt: skip
    assert settings_from_config(config | {"POSTGRES_STATEMENT_TIMEOUT": "2147483"})
    with pytest.raises(ConfigError, match="POSTGRES_STATEMENT_TIMEOUT must be"):
        settings_from_config(config | {"POSTGRES_STATEMENT_TIMEOUT": "2592000"})


async def test_the_statement_timeout_stops_the_backend_and_names_the_bound(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    config = postgres_server.link_config(database) | {"POSTGRES_STATEMENT_TIMEOUT": "0.5"}
    caller = await linked_caller(provider, nc, client, config)
    marker = f"sleepy_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    result = await caller.query(f"SELECT pg_sleep(30) AS {marker}")
    elapsed = time.perf_counter() - started
    assert isinstance(result, Err) and result.value.tag == "unexpected"
    assert "57014" in result.value.value
    assert "POSTGRES_STATEMENT_TIMEOUT is 0.5 s" in result.value.value
    assert elapsed < 5
    admin = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        running = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active'"
            " AND pid <> pg_backend_pid()",
            f"%{marker}%",
        )
    finally:
        await admin.close()
    assert running == 0  # PostgreSQL itself stopped the statement
    # A guest cannot lift its own bound for later calls: the session is reset after a SET.
    assert isinstance(await caller.batch("SET statement_timeout = 0"), Ok)
    again = await caller.query("SELECT pg_sleep(2)")
    assert isinstance(again, Err) and "57014" in again.value.value


async def test_waiting_for_a_busy_pool_is_bounded(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    config = postgres_server.link_config(database) | {
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_ACQUIRE_TIMEOUT": "0.3",
    }
    caller = await linked_caller(provider, nc, client, config)
    holder = asyncio.create_task(caller.query("SELECT pg_sleep(3)"))
    await asyncio.sleep(0.5)  # the one connection is busy
    started = time.perf_counter()
    result = await caller.query("SELECT 1")
    elapsed = time.perf_counter() - started
    assert isinstance(result, Err) and result.value.tag == "unexpected"
    assert "no database connection free within 0.3 s (POSTGRES_ACQUIRE_TIMEOUT" in (
        result.value.value
    )
    assert elapsed < 1.5
    assert isinstance(await holder, Ok)


async def test_a_secret_username_never_appears_in_logs_health_or_errors(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    capabilities.require(
        "secrets", bool(postgres_server.password), "this PostgreSQL accepts any password"
    )
    secret_user = f"secretuser{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        await admin.execute(f"CREATE ROLE {secret_user} LOGIN PASSWORD 'pw-{secret_user}'")
    finally:
        await admin.close()
    config = postgres_server.link_config(database)
    del config["POSTGRES_USERNAME"], config["POSTGRES_PASSWORD"]
    good = await linked_caller(
        provider, nc, client, config,
        {"POSTGRES_USERNAME": secret_user, "POSTGRES_PASSWORD": f"pw-{secret_user}"},
    )  # fmt: skip
    result = await good.query("SELECT current_user::text")
    assert isinstance(result, Ok) and values_of(result.value) == [[Case("text", secret_user)]]
    # The guest's own data is not redacted; error texts and everything we say are.
    denied = await good.query(f"SELECT * FROM pg_authid WHERE rolname = '{secret_user}'")
    assert isinstance(denied, Err) and secret_user not in str(denied.value)
    source = new_source_id()
    wrong = {"POSTGRES_USERNAME": secret_user, "POSTGRES_PASSWORD": "wrong"}
    await provider.host.put_link(nc, provider.host.link_definition(source, config, wrong))
    failing = Caller(client, source)
    answer: Any = None
    for _ in range(50):
        answer = await failing.query("SELECT 1")
        if isinstance(answer, Err) and "no link" not in str(answer.value):
            break
        await asyncio.sleep(0.05)
    assert isinstance(answer, Err)
    assert "[redacted]" in str(answer.value) and secret_user not in str(answer.value)
    health = await provider.host.health(nc)
    assert secret_user not in health["message"] and "[redacted]@" in health["message"]
    log = provider.log_text()
    assert "[redacted]@" in log  # the `link ready` line names the database without the user
    assert secret_user not in log


async def test_sessions_never_pass_between_links_on_a_shared_pool(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    """The attacks detection cannot see: changes made inside functions."""
    schema, role = f"evil_{uuid.uuid4().hex[:6]}", f"other_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.marker (x int)")
        await admin.execute(f"CREATE ROLE {role}; GRANT {role} TO CURRENT_USER")
        await admin.execute(
            f"CREATE FUNCTION {schema}.poison() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
            f"PERFORM set_config('search_path', '{schema}', false); "
            "PERFORM set_config('statement_timeout', '1', false); "
            f"EXECUTE 'SET ROLE {role}'; RETURN 1; END $$"
        )
    finally:
        await admin.close()
    shared = postgres_server.link_config(database) | {
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_SHARE_CONNECTIONS_BY_URL": "true",
    }
    shared_user = shared["POSTGRES_USERNAME"]
    attacker = await linked_caller(provider, nc, client, shared)
    victim = await linked_caller(provider, nc, client, shared)
    for _ in range(3):
        assert isinstance(await attacker.query(f"SELECT {schema}.poison()"), Ok)
        path = await victim.query("SELECT current_setting('search_path')")
        assert isinstance(path, Ok) and schema not in str(values_of(path.value))
        who = await victim.query("SELECT current_user::text")
        assert isinstance(who, Ok) and values_of(who.value) == [[Case("text", shared_user)]]
        assert isinstance(await victim.query("SELECT pg_sleep(0.05)"), Ok)
        marker = await victim.query("SELECT count(*) FROM marker")
        assert isinstance(marker, Err) and "42P01" in marker.value.value


def nulls_params(codec: Any, count: int) -> bytes:
    """`query("SELECT 1", [null] * count)` encoded by hand (a client would take ages)."""
    from provider.wit.codec import encode_uleb128

    out = bytearray(codec.encode_values([QUERY.param_types[0]], ["SELECT 1"]))
    encode_uleb128(count, out)
    return bytes(out) + b"\x00" * count  # case 0 of pg-value is `null`


def test_list_counts_are_read_from_a_prefix_of_the_parameters() -> None:
    from provider.wit.codec import Codec

    codec = Codec()
    data = nulls_params(codec, 70_000)
    assert codec.leading_list_lengths(QUERY.param_types, data[:20]) == [70_000]
    assert codec.leading_list_lengths(QUERY.param_types, data[:3]) == []  # inside the string
    exec_params = codec.encode_values(EXEC.param_types, ["pstmt-x", [Case("null")] * 3])
    assert codec.leading_list_lengths(EXEC.param_types, exec_params) == [3]


@pytest.mark.parametrize("count", [65_536, 16 * 1024 * 1024 - 64])
async def test_more_parameters_than_postgresql_takes_are_refused_at_once(
    provider: RunningProvider,
    nc: Any,
    client: WrpcClient,
    postgres_server: Any,
    database: str,
    count: int,
) -> None:
    from provider.wit.codec import Codec

    attacker = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    bystander = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    codec = Codec()
    params = nulls_params(codec, count)
    headers = {"source-id": attacker.source_id, "link-name": "default"}
    latencies: list[float] = []
    stop = asyncio.Event()

    async def other_component() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            assert isinstance(await bystander.query("SELECT 1"), Ok)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(other_component())
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    raw = await client.invoke(QUERY.instance, QUERY.name, params, headers)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)
    stop.set()
    await watcher
    (result,) = codec.decode_values(QUERY.results, raw)
    assert isinstance(result, Err) and result.value.tag == "invalid-params"
    assert f"{count} list items given; at most 65535 are accepted" in result.value.value
    assert elapsed < 3
    assert latencies and max(latencies) < 1.0
    print(f"\n{count} parameters refused in {elapsed * 1000:.0f} ms; bystander worst "
          f"{max(latencies) * 1000:.0f} ms")  # fmt: skip


def rss_bytes(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_an_over_limit_result_is_stopped_in_bounded_memory_and_hurts_nobody(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    bound = 8 * 1024 * 1024
    config = postgres_server.link_config(database) | {
        "POSTGRES_MAX_RESULT_BYTES": str(bound),
        "POSTGRES_POOL_SIZE": "1",
    }
    attacker = await linked_caller(provider, nc, client, config)
    bystander = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    assert provider.process.process is not None
    pid = provider.process.process.pid
    baseline = peak = rss_bytes(pid)
    latencies: list[float] = []
    stop = asyncio.Event()

    async def other_component() -> None:
        nonlocal peak
        while not stop.is_set():
            started = time.perf_counter()
            assert isinstance(await bystander.query("SELECT 1"), Ok)
            latencies.append(time.perf_counter() - started)
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(other_component())
    marker = f"huge_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()  # about 1 GB of rows
    result = await attacker.query(
        f"SELECT repeat('x', 1000) AS {marker} FROM generate_series(1, 1000000)"
    )
    elapsed = time.perf_counter() - started
    stop.set()
    await watcher
    assert isinstance(result, Err) and result.value.tag == "unexpected"
    assert f"result exceeds {bound} bytes (POSTGRES_MAX_RESULT_BYTES" in result.value.value
    assert elapsed < 10
    assert peak - baseline < 64 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MiB"
    assert latencies and max(latencies) < 1.0
    growth = (peak - baseline) / 2**20
    worst = max(latencies) * 1000
    print(
        f"\nover-limit query: {elapsed:.2f} s, RSS +{growth:.1f} MiB, other caller {worst:.0f} ms"
    )
    admin = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        running = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state <> 'idle'"
            " AND pid <> pg_backend_pid()",
            f"%{marker}%",
        )
    finally:
        await admin.close()
    assert running == 0
    # The link's one connection came back healthy.
    after = await attacker.query("SELECT 41 + 1 AS n")
    assert isinstance(after, Ok) and values_of(after.value) == [[Case("int4", 42)]]


async def test_results_past_a_first_batch_come_whole_through_a_cursor(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    result = await caller.query("SELECT g, 'row ' || g AS label FROM generate_series(1, 5000) g")
    assert isinstance(result, Ok)
    rows = values_of(result.value)
    assert len(rows) == 5000
    assert rows[0] == [Case("int4", 1), Case("text", "row 1")]
    assert rows[-1] == [Case("int4", 5000), Case("text", "row 5000")]
    counted = await caller.prepare("SELECT g FROM generate_series(1, 100000) g")
    assert isinstance(counted, Ok)
    assert await caller.exec(counted.value, []) == Ok(100000)  # counted, never held


async def test_a_writing_statement_over_the_bound_is_rolled_back(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    config = postgres_server.link_config(database) | {"POSTGRES_MAX_RESULT_BYTES": "100000"}
    caller = await linked_caller(provider, nc, client, config)
    table = f"written_{uuid.uuid4().hex[:8]}"
    assert isinstance(await caller.batch(f"CREATE TABLE {table} (id int, pad text)"), Ok)
    result = await caller.query(
        f"INSERT INTO {table} SELECT g, repeat('p', 100) FROM generate_series(1, 5000) g "
        "RETURNING id, pad"
    )
    assert isinstance(result, Err) and "POSTGRES_MAX_RESULT_BYTES" in result.value.value
    count = await caller.query(f"SELECT count(*)::int4 FROM {table}")
    assert isinstance(count, Ok) and values_of(count.value) == [[Case("int4", 0)]]
    small = await caller.query(f"INSERT INTO {table} VALUES (1, 'a') RETURNING id")
    assert isinstance(small, Ok) and values_of(small.value) == [[Case("int4", 1)]]


async def test_portal_fetch_is_fetch_in_batches(postgres_server: Any, database: str) -> None:
    """The one use of asyncpg internals, pinned to the public `fetch`."""
    from provider.postgres.bounded_fetch import portal_fetch

    connection = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        statement = await connection.prepare("SELECT g, g::text FROM generate_series(1, $1) g")
        expected = await statement.fetch(10)
        async with connection.transaction():
            rows, status, completed = await portal_fetch(statement, [10], "p_whole", 100)
            assert completed and status == "SELECT 10" and rows == expected
            first, _, completed = await portal_fetch(statement, [10], "p_parts", 4)
            assert not completed and first == expected[:4]
            rest, status, completed = await portal_fetch(statement, None, "p_parts", 100)
            assert completed and first + rest == expected
            assert status == "SELECT 6"  # PostgreSQL counts the last Execute only
        assert await connection.fetchval("SELECT 1") == 1  # the connection is fine after
    finally:
        await connection.close()


def test_the_size_estimate_follows_the_encoded_size() -> None:
    from provider.postgres.bounded_fetch import names_size, rows_size
    from provider.postgres.values.convert import convert_rows
    from provider.wit.codec import Codec
    from provider.wit.model import postgres_package

    result_type = postgres_package().function("query", "query").results
    codec = Codec()
    texts = [(f"value {i} " * 20, b"\x00\x01" * 50) for i in range(200)]
    converters = [("label", lambda v: Case("text", v)), ("blob", lambda v: Case("bytea", v))]
    encoded = len(codec.encode_values(result_type, [Ok(convert_rows(texts, converters))]))
    estimate = rows_size(texts, names_size(["label", "blob"]))
    assert encoded <= estimate <= encoded * 1.2


def test_rows_encoded_batch_by_batch_are_the_rows_encoded_whole() -> None:
    """The batch encoder (EncodedList) pinned to the general list encoder."""
    from provider.wit.codec import Codec
    from provider.wit.values import EncodedList

    codec = Codec()
    result_types = QUERY.results
    rows = [
        [
            {"column-name": "n", "value": Case("int4", i)},
            {"column-name": "t", "value": Case("null")},
        ]
        for i in range(7)
    ]
    row_type = result_types[0].ok.element  # type: ignore[attr-defined]
    batches = (codec.encode_items(row_type, rows[:3]), codec.encode_items(row_type, rows[3:]))
    whole = codec.encode_values(result_types, [Ok(rows)])
    spliced = codec.encode_values(result_types, [Ok(EncodedList(len(rows), batches))])
    assert spliced == whole
    parts = codec.encode_values_parts(result_types, [Ok(EncodedList(len(rows), batches))])
    assert parts[1:] == list(batches) and b"".join(parts) == whole  # kept by reference
    assert codec.decode_values(result_types, spliced) == (Ok(rows),)


def test_message_chunks_are_the_chunks_of_the_joined_parts() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from provider.wrpc.framing import chunks, message_chunks

    @given(st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 17))
    def same(parts: list[bytes], size: int) -> None:
        assert list(message_chunks(parts, size)) == list(chunks(b"".join(parts), size))

    same()


async def test_a_result_is_never_fetched_twice(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    """A SELECT whose function writes runs exactly once, however many rows it returns."""
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    name = f"audit_{uuid.uuid4().hex[:8]}"
    setup = (
        f"CREATE TABLE {name} (n int); CREATE FUNCTION {name}_note(n int) RETURNS int "
        f"LANGUAGE sql AS $$ INSERT INTO {name} VALUES (n) RETURNING n $$"
    )
    assert isinstance(await caller.batch(setup), Ok)
    result = await caller.query(f"SELECT {name}_note(g) FROM generate_series(1, 1000) g")
    assert isinstance(result, Ok) and len(result.value) == 1000
    count = await caller.query(f"SELECT count(*)::int4 FROM {name}")
    assert isinstance(count, Ok) and values_of(count.value) == [[Case("int4", 1000)]]


async def test_huge_rows_are_stopped_after_a_few(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    config = postgres_server.link_config(database) | {"POSTGRES_MAX_RESULT_BYTES": "1048576"}
    caller = await linked_caller(provider, nc, client, config)
    assert provider.process.process is not None
    before = rss_bytes(provider.process.process.pid)
    result = await caller.query("SELECT repeat('x', 1000000) FROM generate_series(1, 400)")
    growth = rss_bytes(provider.process.process.pid) - before
    assert isinstance(result, Err) and "POSTGRES_MAX_RESULT_BYTES" in result.value.value
    assert growth < 200 * 1024 * 1024, f"RSS grew by {growth >> 20} MiB"  # 400 MB unbounded


async def test_a_procedure_that_commits_still_runs(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    name = f"proc_{uuid.uuid4().hex[:8]}"
    procedure = (
        f"CREATE PROCEDURE {name}(INOUT r int) LANGUAGE plpgsql AS "
        "$$ BEGIN r := r + 1; COMMIT; END $$"
    )
    assert isinstance(await caller.batch(procedure), Ok)
    result = await caller.query(f"CALL {name}(1)")
    assert isinstance(result, Ok) and values_of(result.value) == [[Case("int4", 2)]]


async def test_a_procedure_call_behind_a_comment_still_commits(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    name = f"proc_{uuid.uuid4().hex[:8]}"
    procedure = (
        f"CREATE PROCEDURE {name}(INOUT r int) LANGUAGE plpgsql AS "
        "$$ BEGIN r := r * 10; COMMIT; END $$"
    )
    assert isinstance(await caller.batch(procedure), Ok)
    result = await caller.query(f"/* from the app */ CALL {name}(4)")
    assert isinstance(result, Ok) and values_of(result.value) == [[Case("int4", 40)]]


async def test_the_fast_paths_are_pinned_to_asyncpg(postgres_server: Any, database: str) -> None:
    """`run_without_rows` gives the command tag `PreparedStatement.fetch` leaves, and
    `single_trip_fetch` the rows of `fetch` when they fit one batch (else it says so)."""
    from provider.postgres.bounded_fetch import (
        FIRST_BATCH_ROWS,
        run_without_rows,
        single_trip_fetch,
    )

    connection = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    try:
        await connection.execute("CREATE TEMP TABLE fast (n int); CREATE TEMP TABLE slow (n int)")
        for sql, args in (
            ("INSERT INTO {} SELECT generate_series(1, $1)", [5]),
            ("UPDATE {} SET n = n + 1 WHERE n > $1", [2]),
            ("DELETE FROM {} WHERE n = $1", [4]),
        ):
            fast = await run_without_rows(await connection.prepare(sql.format("fast")), args)
            reference = await connection.prepare(sql.format("slow"))
            await reference.fetch(*args)
            assert fast == reference.get_statusmsg()
        assert await connection.fetchval("SELECT count(*) FROM fast") == 4
        select = await connection.prepare("SELECT g FROM generate_series(1, $1) g")
        for size in (0, 1, FIRST_BATCH_ROWS, FIRST_BATCH_ROWS + 1, FIRST_BATCH_ROWS + 2, 500):
            rows, status, completed = await single_trip_fetch(select, [size])
            if completed:
                assert rows == await select.fetch(size) and status == f"SELECT {size}"
            else:
                assert size >= FIRST_BATCH_ROWS + 1  # reaching the limit suspends the portal
    finally:
        await connection.close()


async def test_reads_around_one_batch_come_whole(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> None:
    """A read tried in one round trip and run again when longer than a batch: every size."""
    from provider.postgres.bounded_fetch import FIRST_BATCH_ROWS

    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    for size in (0, 1, FIRST_BATCH_ROWS, FIRST_BATCH_ROWS + 1, FIRST_BATCH_ROWS + 2, 3000):
        result = await caller.query(
            "SELECT g::int4 FROM generate_series(1, $1) g ORDER BY g", [Case("int4", size)]
        )
        assert isinstance(result, Ok)
        assert values_of(result.value) == [[Case("int4", n)] for n in range(1, size + 1)]
