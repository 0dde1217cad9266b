"""The provider through the wire: real NATS, real PostgreSQL, the provider as a child process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devkit.provider_harness import (
    Caller,
    RunningProvider,
    linked_caller,
    new_source_id,
    values_of,
    wait_linked,
)
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from tests import capabilities
from tests.waiting import until


@pytest.fixture
async def caller(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any, database: str
) -> Caller:
    return await linked_caller(provider, nc, client, postgres_server.link_config(database))


async def test_query_with_parameters_returns_typed_rows(caller: Caller) -> None:
    result = await caller.query(
        "SELECT $1::int4 AS n, $2::text AS t, NULL::int8 AS missing",
        [Case("int4", 41), Case("text", "hello")],
    )
    assert isinstance(result, Ok)
    (row,) = result.value
    assert [entry["column-name"] for entry in row] == ["n", "t", "missing"]
    assert values_of(result.value) == [[Case("int4", 41), Case("text", "hello"), Case("null")]]


async def test_batch_prepare_exec_and_query_back(caller: Caller) -> None:
    table = f"items_{caller.source_id.replace('-', '_')}"
    assert (
        await caller.batch(
            f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL, qty int4);"
            f"INSERT INTO {table} (name, qty) VALUES ('seed', 0);"
        )
        == Ok()
    )
    prepared = await caller.prepare(f"INSERT INTO {table} (name, qty) VALUES ($1, $2)")
    assert isinstance(prepared, Ok) and prepared.value.startswith("pstmt-")
    for i in range(5):
        assert await caller.exec(prepared.value, [Case("text", f"n{i}"), Case("int4", i)]) == Ok(1)
    update = await caller.prepare(f"UPDATE {table} SET qty = qty + 10 WHERE qty >= $1")
    assert await caller.exec(update.value, [Case("int4", 2)]) == Ok(3)
    rows = await caller.query(f"SELECT name, qty FROM {table} ORDER BY id")
    assert values_of(rows.value) == [
        [Case("text", "seed"), Case("int4", 0)],
        *([Case("text", f"n{i}"), Case("int4", i + 10 if i >= 2 else i)] for i in range(5)),
    ]
    # The same SQL prepared again on the same link gives the same token.
    assert await caller.prepare(f"UPDATE {table} SET qty = qty + 10 WHERE qty >= $1") == update


async def test_error_variants(caller: Caller) -> None:
    syntax = await caller.query("SELEC 1")
    assert isinstance(syntax, Err) and syntax.value.tag == "invalid-query"
    assert "42601" in syntax.value.value and "syntax error" in syntax.value.value
    wrong_type = await caller.query("SELECT $1::int4", [Case("text", "x")])
    assert wrong_type.value.tag == "invalid-params"
    assert "$1" in wrong_type.value.value and "int4" in wrong_type.value.value
    bad_value = await caller.query("SELECT $1::numeric", [Case("numeric", "abc")])
    assert bad_value.value.tag == "invalid-params"
    bad_cidr = await caller.query("SELECT $1::cidr", [Case("cidr", "10.0.0.1/8")])
    assert bad_cidr.value.tag == "invalid-params" and "22P02" in bad_cidr.value.value
    count = await caller.query("SELECT $1::int4", [])
    assert count.value.tag == "invalid-params" and "1 parameters, 0 were given" in count.value.value
    runtime = await caller.query("SELECT 1 / 0")
    assert runtime.value.tag == "unexpected" and "22012" in runtime.value.value
    batch = await caller.batch("CREATE TABLE; nonsense")
    assert batch.value.tag == "invalid-query"
    prepare = await caller.prepare("SELEC 1")
    assert isinstance(prepare, Err) and prepare.value.tag == "unexpected"
    assert "42601" in prepare.value.value
    unknown = await caller.exec("pstmt-no-such-token", [])
    assert unknown == Err(Case("unknown-prepared-query"))
    token = (await caller.prepare("SELECT 1 / $1::int4")).value
    failing = await caller.exec(token, [Case("int4", 0)])
    assert failing.value.tag == "query-error" and failing.value.value.tag == "unexpected"


async def test_tokens_are_scoped_to_the_link_that_prepared_them(
    provider: RunningProvider, nc: Any, client: WrpcClient, caller: Caller,
    postgres_server: Any, database: str,
) -> None:  # fmt: skip
    other = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    token = (await caller.prepare("SELECT 42")).value
    assert await caller.exec(token) == Ok(1)
    assert await other.exec(token) == Err(Case("unknown-prepared-query"))


async def test_call_without_a_link_gets_a_clear_error(client: WrpcClient) -> None:
    stranger = Caller(client, "app-never-linked")
    result = await stranger.query("SELECT 1")
    assert result == Err(
        Case("unexpected", "no link from source 'app-never-linked' to this provider")
    )
    assert (await stranger.exec("t")).value.tag == "unexpected"


async def test_two_links_to_two_databases_are_isolated(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any,
    make_database: Any,
) -> None:  # fmt: skip
    first_db, second_db = make_database(), make_database()
    first = await linked_caller(provider, nc, client, postgres_server.link_config(first_db))
    second = await linked_caller(provider, nc, client, postgres_server.link_config(second_db))
    assert (
        await first.batch("CREATE TABLE mine (v text); INSERT INTO mine VALUES ('first')") == Ok()
    )
    assert (
        await second.batch("CREATE TABLE mine (v text); INSERT INTO mine VALUES ('second')") == Ok()
    )
    assert values_of((await first.query("SELECT v FROM mine")).value) == [[Case("text", "first")]]
    assert values_of((await second.query("SELECT v FROM mine")).value) == [[Case("text", "second")]]
    name = await first.query("SELECT current_database()")
    assert values_of(name.value) == [[Case("name", first_db)]]


async def test_link_delete_closes_the_link_and_forgets_its_statements(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any,
    database: str,
) -> None:  # fmt: skip
    caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    token = (await caller.prepare("SELECT 7")).value
    await provider.host.delete_link(nc, caller.source_id)
    for _ in range(50):
        result = await caller.query("SELECT 1")
        if isinstance(result, Err):
            break
        await asyncio.sleep(0.05)
    assert result.value.tag == "unexpected" and "no link" in result.value.value
    await provider.host.put_link(
        nc,
        provider.host.link_definition(caller.source_id, postgres_server.link_config(database)),
    )
    await wait_linked(caller, strict=True)
    assert await caller.exec(token) == Err(Case("unknown-prepared-query"))


async def test_secrets_override_config(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any,
    database: str,
) -> None:  # fmt: skip
    capabilities.require(
        "secrets", bool(postgres_server.password), "this PostgreSQL trusts every connection"
    )
    config = {**postgres_server.link_config(database), "POSTGRES_PASSWORD": "wrong-password"}
    caller = await linked_caller(
        provider, nc, client, config, secrets={"POSTGRES_PASSWORD": postgres_server.password}
    )
    assert values_of((await caller.query("SELECT 5::int4")).value) == [[Case("int4", 5)]]
    # Without the secret, the wrong password in config is what the provider uses.
    plain = await linked_caller(provider, nc, client, config)
    failed = await plain.query("SELECT 1")
    assert failed.value.tag == "unexpected" and "password" in failed.value.value
    assert postgres_server.password not in provider.log_text()  # secrets are never logged


async def refused(caller: Caller) -> Any:
    """The caller's error once its link is refused (before the put is applied: "no link")."""
    result = await caller.query("SELECT 1")
    return result if isinstance(result, Err) and "refused" in result.value.value else None


async def test_bad_config_is_refused_clearly_and_health_says_why(
    provider: RunningProvider, nc: Any, client: WrpcClient, postgres_server: Any,
    database: str,
) -> None:  # fmt: skip
    source_id = new_source_id()
    await provider.host.put_link(
        nc, provider.host.link_definition(source_id, {"POSTGRES_HOST": "127.0.0.1"})
    )
    caller = Caller(client, source_id)
    result = await until(
        lambda: refused(caller), "the bad link refused (not just unknown)", seconds=10
    )
    assert result.value.tag == "unexpected" and "POSTGRES_DATABASE" in result.value.value
    health = await provider.host.health(nc)
    assert health["healthy"] is False and source_id in health["message"]
    await provider.host.delete_link(nc, source_id)
    # The provider still serves everyone else.
    good = await linked_caller(provider, nc, client, postgres_server.link_config(database))
    assert isinstance(await good.query("SELECT 1"), Ok)


async def test_health_reports_an_unreachable_database(
    provider: RunningProvider, nc: Any, client: WrpcClient,
) -> None:  # fmt: skip
    from devkit.local_nats import free_port

    dead = {
        "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(free_port()),
        "POSTGRES_USERNAME": "u", "POSTGRES_PASSWORD": "p", "POSTGRES_DATABASE": "d",
    }  # fmt: skip
    caller = await linked_caller(provider, nc, client, dead)
    result = await caller.query("SELECT 1")
    assert result.value.tag == "unexpected" and "unreachable" in result.value.value
    health = await provider.host.health(nc)
    assert health["healthy"] is False
    assert caller.source_id in health["message"] and "unreachable" in health["message"]
    await provider.host.delete_link(nc, caller.source_id)


async def test_config_update_is_accepted(provider: RunningProvider, nc: Any) -> None:
    before = await provider.host.health(nc)
    await provider.host.update_config(nc, {"LOG_NOTE": "hello"})
    await until(lambda: '"keys": ["LOG_NOTE"]' in provider.log_text(), "the update logged")
    # A config update changes nothing a link relies on: health reads exactly as before.
    assert await provider.host.health(nc) == before


async def test_session_settings_do_not_leak_into_later_calls(caller: Caller) -> None:
    # A guest changes what the conversions rely on, through query-batch and through query.
    assert await caller.batch("SET DateStyle = 'SQL, DMY'; SET search_path = nowhere") == Ok()
    changed = await caller.query("SELECT set_config('IntervalStyle', 'iso_8601', false)")
    assert isinstance(changed, Ok)
    for _ in range(6):  # whichever connection serves it, the session is the expected one
        result = await caller.query(
            "SELECT '2020-03-02'::date AS d, '1 day'::interval::text AS i, "
            "current_setting('search_path') AS p"
        )
        assert isinstance(result, Ok), result
        day, interval, path = values_of(result.value)[0]
        assert day == Case("date", Case("ymd", (2020, 3, 2)))
        assert interval == Case("text", "1 day")
        assert path == Case("text", '"$user", public')  # the server's default


async def test_role_and_settings_changed_through_query_do_not_leak(
    caller: Caller, postgres_server: Any
) -> None:
    import uuid

    caller_user = postgres_server.user

    role = f"r_{uuid.uuid4().hex[:8]}"
    assert await caller.batch(f"CREATE ROLE {role}; GRANT {role} TO CURRENT_USER") == Ok()
    try:
        assert await caller.batch(f"SET ROLE {role}") == Ok()
        assert isinstance(await caller.query("SET search_path = nowhere"), Ok)
        assert isinstance(await caller.query("SELECT set_config('TimeZone', 'UTC', false)"), Ok)
        for _ in range(6):
            result = await caller.query(
                "SELECT current_user::text AS u, current_setting('search_path') AS p"
            )
            user, path = values_of(result.value)[0]
            assert user == Case("text", caller_user) and path == Case("text", '"$user", public')
    finally:
        assert await caller.batch(f"DROP ROLE {role}") == Ok()
