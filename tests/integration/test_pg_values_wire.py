"""Every pg-value case through the wire: parameter → PostgreSQL column → result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from devkit.provider_harness import Caller, RunningProvider, values_of, wait_linked
from provider.wit.model import VariantType, postgres_package
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient
from tests import capabilities
from tests.pg_value_cases import ROUND_TRIPS


@pytest.fixture
async def caller(
    nats_url: str, provider: RunningProvider, postgres_server: Any, database: str
) -> AsyncIterator[Caller]:
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await client.start()
    source_id = "app-values"
    await provider.host.put_link(
        nc, provider.host.link_definition(source_id, postgres_server.link_config(database))
    )
    caller = Caller(client, source_id)
    await wait_linked(caller)
    assert await caller.batch("CREATE EXTENSION IF NOT EXISTS hstore") == Ok()
    yield caller
    await client.close()
    await nc.close()


def test_the_table_covers_every_pg_value_case() -> None:
    pg_value = postgres_package().type("types", "pg-value")
    assert isinstance(pg_value, VariantType)
    covered = {row[0] for row in ROUND_TRIPS} | {"null"}
    assert covered == {name for name, _ in pg_value.cases}


@pytest.mark.parametrize(
    ("case", "sql_type", "payload", "expected_case", "expected_payload"),
    ROUND_TRIPS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(ROUND_TRIPS)],
)
async def test_round_trip(
    caller: Caller, postgres_server: Any, case: str, sql_type: str, payload: Any,
    expected_case: str | None, expected_payload: Any,
) -> None:  # fmt: skip
    if sql_type.startswith("xml"):
        capabilities.require("xml", postgres_server.has_xml, "this PostgreSQL has no libxml")
    result = await caller.query(f"SELECT $1::{sql_type} AS v", [Case(case, payload)])
    assert isinstance(result, Ok), result
    expected = Case(
        expected_case or case, payload if expected_payload is None else expected_payload
    )
    assert values_of(result.value) == [[expected]]


async def test_null_of_any_type(caller: Caller) -> None:
    result = await caller.query(
        "SELECT $1::int4 AS a, $2::text[] AS b", [Case("null"), Case("null")]
    )
    assert values_of(result.value) == [[Case("null"), Case("null")]]


async def test_types_without_a_case_come_back_as_text(caller: Caller) -> None:
    result = await caller.query(
        "SELECT '[1,5)'::int4range AS r, ROW(1, 'x y')::record AS rec, "
        "'{1,NULL}'::int4[] AS holes, "
        "'{{1,2},{3,4}}'::int4[] AS matrix, '1 day 02:00'::interval AS dur, 7::oid AS o, "
        "'[2020-01-01 10:00, 2020-01-02 00:00)'::tsrange AS tsr, 'empty'::daterange AS nothing"
    )
    assert isinstance(result, Ok), result
    assert values_of(result.value) == [[
        Case("text", "[1,5)"), Case("text", '(1,"x y")'), Case("text", "{1,NULL}"),
        Case("text", "{{1,2},{3,4}}"), Case("text", "1 day 02:00:00"), Case("text", "7"),
        Case("text", '["2020-01-01 10:00:00","2020-01-02 00:00:00")'), Case("text", "empty"),
    ]]  # fmt: skip


async def test_compatible_cases_and_text_for_untyped_parameters(caller: Caller) -> None:
    result = await caller.query(
        "SELECT $1::int8 AS widened, $2::numeric AS exact, $3 AS untyped, $4::jsonb AS j",
        [Case("int2", 5), Case("int4", 7), Case("int4", 9), Case("json", '{"k": 1}')],
    )
    assert values_of(result.value) == [[
        Case("int8", 5), Case("numeric", "7"), Case("text", "9"), Case("jsonb", '{"k": 1}'),
    ]]  # fmt: skip


async def test_timestamptz_with_an_offset_is_the_same_instant(caller: Caller) -> None:
    noon = {"hour": 12, "min": 0, "sec": 0, "micro": 0}
    sent = {"timestamp": {"date": Case("ymd", (2024, 1, 1)), "time": noon},
            "offset": Case("eastern-hemisphere-secs", 3600)}  # fmt: skip
    result = await caller.query(
        "SELECT $1::timestamptz = '2024-01-01 11:00:00+00'::timestamptz AS same",
        [Case("timestamp-tz", sent)],
    )
    assert values_of(result.value) == [[Case("bool", True)]]


async def test_empty_array_elements_never_crash_the_provider(caller: Caller) -> None:
    # asyncpg's own text-array decoder crashes the process on these; every connection of the
    # pool must be covered, including for types created after it connected (citext here).
    assert await caller.batch("DROP EXTENSION IF EXISTS citext") == Ok()
    for _ in range(3):  # warm several connections before the extension exists
        assert isinstance(await caller.query("SELECT 1"), Ok)
    assert await caller.batch("CREATE EXTENSION citext") == Ok()
    queries = {
        "SELECT ARRAY[''::refcursor, 'x'] AS v": Case("text", '{"",x}'),
        "SELECT ARRAY[''::tsvector] AS v": Case("text", '{""}'),
        "SELECT ARRAY[''::hstore] AS v": Case("text", '{""}'),
        "SELECT ARRAY[''::citext, 'A'] AS v": Case("text", '{"",A}'),
        "SELECT ARRAY['', 'x']::text[] AS v": Case("text-array", ["", "x"]),
    }
    for _ in range(4):  # on whichever connections serve them
        results = await asyncio.gather(*(caller.query(sql) for sql in queries))
        for (sql, expected), result in zip(queries.items(), results, strict=True):
            assert isinstance(result, Ok), (sql, result)
            assert values_of(result.value) == [[expected]], sql


async def test_records_and_new_types_come_back_as_postgresql_prints_them(caller: Caller) -> None:
    for _ in range(3):  # warm connections before the new type exists
        assert isinstance(await caller.query("SELECT 1"), Ok)
    assert (
        await caller.batch(
            "DROP TYPE IF EXISTS numr; CREATE TYPE numr AS RANGE (subtype = numeric)"
        )
        == Ok()
    )
    queries = {
        "SELECT ROW(ARRAY[1::oid]) AS v": Case("text", "({1})"),
        "SELECT ROW(1.5::numeric, '2020-01-01'::date) AS v": Case("text", "(1.5,2020-01-01)"),
        "SELECT '1 2'::oidvector AS v": Case("text", "1 2"),
        "SELECT '[1.5,2)'::numr AS v": Case("text", "[1.5,2)"),
    }
    for _ in range(4):
        results = await asyncio.gather(*(caller.query(sql) for sql in queries))
        for (sql, expected), result in zip(queries.items(), results, strict=True):
            assert isinstance(result, Ok), (sql, result)
            assert values_of(result.value) == [[expected]], sql
