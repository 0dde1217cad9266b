"""The conformance table: SQL, parameters, and the answer the WIT contract calls for.

`deliberate` marks a case whose expected answer is a choice where the spec leaves room (the
README's "where we differ" table gives the reason); wash answering differently there is a
documented difference, anywhere else it is wash being wrong (it crashes, hangs or loses data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from provider.wit.values import Case
from tests.pg_value_cases import ROUND_TRIPS, clock, f64, pt, ymd

DELIBERATE_LINE = "line {A,B,C} travels as ((A,B),(C,0))"
DELIBERATE_INTERVAL = "the interval record maps daterange"
DELIBERATE_RUNTIME = (
    "runtime failures of valid SQL are unexpected (with SQLSTATE), not invalid-query"
)
DELIBERATE_CHAR = "bpchar/char length is the padded length"
DELIBERATE_TEXT_FALLBACK = "types without a case come back as text"
DELIBERATE_TXID = "txid-snapshot (an s64) is sent as int8"
DELIBERATE_JSONB = "jsonb comes back as PostgreSQL prints it; wash re-serialises it compactly"
DELIBERATE_INFINITE_TIME = "an infinite timestamp carries midnight (wash: 23:59:59.999999)"


@dataclass(frozen=True)
class ConformanceCase:
    id: str
    mode: str  # "query", "exec", "batch" or "prepare"
    sql: str
    params: tuple[Case, ...] = ()
    rows: list[list[Case]] | None = None  # expected values, row by row
    affected: int | None = None  # expected rows affected (exec)
    error: tuple[str, ...] | None = None  # expected error variants, outermost first
    setup: str | None = None  # a batch run first (on each side)
    deliberate: str | None = None
    needs_xml: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _round_trips() -> list[ConformanceCase]:
    deliberate = {"line": DELIBERATE_LINE, "line-array": DELIBERATE_LINE,
                  "interval": DELIBERATE_INTERVAL, "interval-array": DELIBERATE_INTERVAL,
                  "char": DELIBERATE_CHAR, "char-array": DELIBERATE_CHAR,
                  "txid-snapshot": DELIBERATE_TXID, "jsonb": DELIBERATE_JSONB,
                  "jsonb-array": DELIBERATE_JSONB}  # fmt: skip
    cases = []
    for index, (case, sql_type, payload, expected_case, expected_payload) in enumerate(ROUND_TRIPS):
        expected = Case(
            expected_case or case, payload if expected_payload is None else expected_payload
        )
        reason = deliberate.get(case)
        if case.startswith("timestamp") and "infinity" in repr(payload):
            reason = DELIBERATE_INFINITE_TIME
        cases.append(
            ConformanceCase(
                id=f"param-{case}-{index}",
                mode="query",
                sql=f"SELECT $1::{sql_type} AS v",
                params=(Case(case, payload),),
                rows=[[expected]],
                setup="CREATE EXTENSION IF NOT EXISTS hstore" if case == "hstore" else None,
                deliberate=reason,
                needs_xml=sql_type.startswith("xml"),
            )
        )
    cases.append(
        ConformanceCase(
            "param-null", "query", "SELECT $1::int4 AS v", (Case("null"),), [[Case("null")]]
        )
    )
    return cases


# (id, SQL, expected value of the one column, deliberate reason)
COLUMNS: list[tuple[str, str, Case, str | None]] = [
    ("numeric-scale", "SELECT 1.50::numeric", Case("numeric", "1.50"), None),
    ("numeric-big", "SELECT 123456789012345678901234567890.123::numeric", Case("numeric", "123456789012345678901234567890.123"), None),
    ("numeric-nan", "SELECT 'NaN'::numeric", Case("numeric", "NaN"), None),
    ("numeric-array", "SELECT '{1.5,2}'::numeric[]", Case("numeric-array", ["1.5", "2"]), None),
    ("money", "SELECT 12.34::money", Case("money", "12.34"), None),
    ("bpchar", "SELECT 'ab'::char(3)", Case("char", (3, b"ab ")), DELIBERATE_CHAR),
    ("varchar-declared", "SELECT 'abc'::varchar(10)", Case("varchar", (None, b"abc")), None),
    ("date-infinity", "SELECT 'infinity'::date", Case("date", Case("positive-infinity")), None),
    ("date-bc", "SELECT '0044-03-15 BC'::date", Case("date", ymd(-43, 3, 15)), None),
    ("timestamp-minus-infinity", "SELECT '-infinity'::timestamp", Case("timestamp", {"date": Case("negative-infinity"), "time": clock(0, 0, 0)}), DELIBERATE_INFINITE_TIME),
    ("timestamptz-utc", "SELECT '2024-01-02 03:04:05.5+00'::timestamptz", Case("timestamp-tz", {"timestamp": {"date": ymd(2024, 1, 2), "time": clock(3, 4, 5, 500000)}, "offset": Case("western-hemisphere-secs", 0)}), None),
    ("timetz", "SELECT '12:34:56+05:30'::timetz", Case("time-tz", {"timesonze": "+05:30", "time": clock(12, 34, 56)}), None),
    ("interval-duration", "SELECT '1 day 02:00'::interval", Case("text", "1 day 02:00:00"), DELIBERATE_TEXT_FALLBACK),
    ("lseg", "SELECT '[(0,0),(1,2)]'::lseg", Case("lseg", (pt(0, 0), pt(1, 2))), None),
    ("line", "SELECT '{1,-1,0}'::line", Case("line", (pt(1, -1), pt(0, 0))), DELIBERATE_LINE),
    ("path", "SELECT '[(0,0),(1,1)]'::path", Case("path", [pt(0, 0), pt(1, 1)]), None),
    ("polygon", "SELECT '((0,0),(1,0),(0,1))'::polygon", Case("polygon", [pt(0, 0), pt(1, 0), pt(0, 1)]), None),
    ("circle", "SELECT '<(1,1),2>'::circle", Case("circle", (pt(1, 1), f64(2))), None),
    ("tsvector", "SELECT 'a:1A b'::tsvector", Case("ts-vector", [{"position": 1, "weight": "A", "data": "a"}, {"position": None, "weight": None, "data": "b"}]), None),
    ("tsquery", "SELECT 'a & b'::tsquery", Case("ts-query", "'a' & 'b'"), None),
    ("oid", "SELECT 7::oid", Case("text", "7"), DELIBERATE_TEXT_FALLBACK),
    ("int4range", "SELECT '[1,5)'::int4range", Case("text", "[1,5)"), DELIBERATE_TEXT_FALLBACK),
    ("record", "SELECT ROW(1, 'x')", Case("text", "(1,x)"), DELIBERATE_TEXT_FALLBACK),
    ("array-with-null", "SELECT '{1,NULL}'::int4[]", Case("text", "{1,NULL}"), DELIBERATE_TEXT_FALLBACK),
    ("array-2d", "SELECT '{{1,2},{3,4}}'::int4[]", Case("text", "{{1,2},{3,4}}"), DELIBERATE_TEXT_FALLBACK),
    ("json-duplicate-keys", """SELECT '{"a": 1, "a": 2}'::json""", Case("json", '{"a": 1, "a": 2}'), None),
    ("json-big-integer", """SELECT '{"n": 12345678901234567890}'::json""", Case("json", '{"n": 12345678901234567890}'), None),
    ("jsonb-normalised", """SELECT '{"b": 1, "a": 2}'::jsonb""", Case("jsonb", '{"a": 2, "b": 1}'), DELIBERATE_JSONB),
    ("float8-nan", "SELECT 'NaN'::float8", Case("float8", f64(math.nan)), None),
    ("float8-denormal", "SELECT 5e-324::float8", Case("float8", f64(5e-324)), None),
    ("float8-negative-zero", "SELECT '-0'::float8", Case("float8", f64(-0.0)), None),
    ("inet-prefix", "SELECT '192.168.0.1/24'::inet", Case("inet", "192.168.0.1/24"), None),
    ("hstore-column", "SELECT 'a=>1, b=>NULL'::hstore", Case("hstore", [("a", "1"), ("b", None)]), None),
    ("int2vector", "SELECT '1 2'::int2vector", Case("int2-vector", [1, 2]), None),
    ("name", "SELECT 'x'::name", Case("name", "x"), None),
    ("uuid", "SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", Case("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None),
    ("bit", "SELECT B'101'", Case("bit", (3, b"\xa0")), None),
    ("varbit", "SELECT B'101'::varbit", Case("varbit", (3, b"\xa0")), None),
    ("bytea", "SELECT '\\x0102'::bytea", Case("bytea", b"\x01\x02"), None),
    ("null-text", "SELECT NULL::text", Case("null"), None),
]  # fmt: skip


def _columns() -> list[ConformanceCase]:
    return [
        ConformanceCase(
            id=f"column-{name}",
            mode="query",
            sql=sql,
            rows=[[expected]],
            deliberate=deliberate,
            setup="CREATE EXTENSION IF NOT EXISTS hstore" if "hstore" in sql else None,
        )
        for name, sql, expected, deliberate in COLUMNS
    ]


TABLE = "conformance_items"
SETUP_TABLE = (
    f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int4 PRIMARY KEY, label text);"
    f"INSERT INTO {TABLE} SELECT g, 'item ' || g FROM generate_series(1, 5) g"
)

STATEMENTS: list[ConformanceCase] = [
    ConformanceCase("exec-insert", "exec", f"INSERT INTO {TABLE} VALUES ($1, $2)",
                    (Case("int4", 10), Case("text", "ten")), affected=1, setup=SETUP_TABLE),
    ConformanceCase("exec-insert-select", "exec",
                    f"INSERT INTO {TABLE} SELECT g, 'x' FROM generate_series(20, 22) g",
                    affected=3, setup=SETUP_TABLE),
    ConformanceCase("exec-update", "exec", f"UPDATE {TABLE} SET label = $1 WHERE id <= $2",
                    (Case("text", "new"), Case("int4", 3)), affected=3, setup=SETUP_TABLE),
    ConformanceCase("exec-delete", "exec", f"DELETE FROM {TABLE} WHERE id > $1",
                    (Case("int4", 3),), affected=2, setup=SETUP_TABLE),
    ConformanceCase("exec-select", "exec", f"SELECT * FROM {TABLE}", affected=5, setup=SETUP_TABLE),
    ConformanceCase("exec-ddl", "exec", "CREATE TABLE IF NOT EXISTS conformance_ddl (x int4)", affected=0),
    ConformanceCase("batch-ok", "batch", "SELECT 1; SELECT 2", rows=None),
]  # fmt: skip

ERRORS: list[ConformanceCase] = [
    ConformanceCase("error-syntax", "query", "SELEC 1", error=("invalid-query",)),
    ConformanceCase("error-wrong-case", "query", "SELECT $1::int4", (Case("text", "x"),),
                    error=("invalid-params",)),
    ConformanceCase("error-bad-numeric", "query", "SELECT $1::numeric", (Case("numeric", "abc"),),
                    error=("invalid-params",)),
    ConformanceCase("error-param-count", "query", "SELECT $1::int4", (), error=("invalid-params",)),
    ConformanceCase("error-division", "query", "SELECT 1 / 0", error=("unexpected",),
                    deliberate=DELIBERATE_RUNTIME),
    ConformanceCase("error-batch-syntax", "batch", "CREATE TABLE; x", error=("invalid-query",)),
    ConformanceCase("error-prepare-syntax", "prepare", "SELEC 1", error=("unexpected",)),
    ConformanceCase("error-exec-unknown-token", "exec", "", extra={"token": "pstmt-unknown"},
                    error=("unknown-prepared-query",)),
    ConformanceCase("error-exec-runtime", "exec", "SELECT 1 / $1::int4", (Case("int4", 0),),
                    error=("query-error", "unexpected")),
]  # fmt: skip


# Last, because wash never answers it and keeps a host thread spinning at 100% CPU.
LAST: list[ConformanceCase] = [
    ConformanceCase("param-numeric-positive-exponent", "query", "SELECT $1::numeric AS v",
                    (Case("numeric", "1e3"),), rows=[[Case("numeric", "1000")]]),
]  # fmt: skip


def all_cases() -> list[ConformanceCase]:
    return [*_round_trips(), *_columns(), *STATEMENTS, *ERRORS, *LAST]
