"""The round-trip table: one row per pg-value case, sent as a parameter and read back.

Each row: (case sent, PostgreSQL type the SQL casts the parameter to, payload, the value expected
back). The expected value is what PostgreSQL's own output means in WIT terms (aliases come back
as the canonical case of their type, jsonb is normalised by the server, and so on).
"""

from __future__ import annotations

import math
from typing import Any

from provider.postgres.values.text import hashable_f32, hashable_f64
from provider.wit.values import Case


def f64(x: float) -> tuple[int, int, int]:
    return hashable_f64(x)


def f32(x: float) -> tuple[int, int, int]:
    return hashable_f32(x)


def pt(x: float, y: float) -> tuple[Any, Any]:
    return (f64(x), f64(y))


def ymd(y: int, m: int, d: int) -> Case:
    return Case("ymd", (y, m, d))


def clock(h: int, mi: int, s: int, us: int = 0) -> dict[str, int]:
    return {"hour": h, "min": mi, "sec": s, "micro": us}


MAC = {"bytes": (0x08, 0x00, 0x2B, 0x01, 0x02, 0x03)}
MAC8 = {"bytes": (0x08, 0x00, 0x2B, 0x01, 0x02, 0x03, 0x04, 0x05)}
RANGE = {
    "start": ymd(2020, 1, 1),
    "start-inclusive": True,
    "end": ymd(2020, 2, 1),
    "end-inclusive": False,
}
TS = {"date": ymd(2024, 2, 29), "time": clock(23, 59, 58, 123456)}
TS_BC = {"date": ymd(-43, 3, 15), "time": clock(12, 0, 0)}  # 44 BC
TS_FAR = {"date": ymd(20000, 1, 1), "time": clock(0, 0, 0, 1)}
TS_INF = {"date": Case("positive-infinity"), "time": clock(0, 0, 0)}
TSTZ = {"timestamp": TS, "offset": Case("western-hemisphere-secs", 0)}
LEXEMES = [
    {"position": 1, "weight": "A", "data": "fat"},
    {"position": 2, "weight": None, "data": "rat"},
    {"position": None, "weight": None, "data": "sat"},
]

# (case, SQL type, payload, expected result case, expected payload) — None means "same as sent".
ROUND_TRIPS: list[tuple[str, str, Any, str | None, Any]] = [
    ("big-int", "int8", -(2**63), "int8", None),
    ("int8", "int8", 2**63 - 1, None, None),
    ("big-serial", "int8", 7, "int8", None),
    ("serial8", "int8", 8, "int8", None),
    ("int8-array", "int8[]", [1, -2, 2**62], None, None),
    ("bool", "bool", True, None, None),
    ("boolean", "bool", False, "bool", None),
    ("bool-array", "bool[]", [True, False], None, None),
    ("double", "float8", f64(1.5), "float8", None),
    ("float8", "float8", f64(math.nan), None, None),
    ("float8", "float8", f64(-0.0), None, None),
    ("float8", "float8", f64(5e-324), None, None),
    ("float8", "float8", f64(-math.inf), None, None),
    ("float8-array", "float8[]", [f64(0.1), f64(math.inf), f64(1e308)], None, None),
    ("real", "float4", f32(0.5), "float4", None),
    ("float4", "float4", f32(math.nan), None, None),
    ("float4", "float4", f32(1e-45), None, None),  # f32's smallest denormal
    ("float4", "float4", f32(3.4028234663852886e38), None, None),
    ("float4-array", "float4[]", [f32(1.25), f32(-math.inf)], None, None),
    ("integer", "int4", -(2**31), "int4", None),
    ("int", "int4", 2**31 - 1, "int4", None),
    ("int4", "int4", 0, None, None),
    ("int4-array", "int4[]", [1, 2, 3], None, None),
    ("numeric", "numeric", "123.4500", None, None),
    ("numeric", "numeric", "NaN", None, None),
    ("numeric", "numeric", "-0.00000000000000000001", None, None),
    ("decimal", "numeric", "1000000000000000000000000000000.5", "numeric", None),
    ("numeric-array", "numeric[]", ["1.10", "-2"], None, None),
    ("serial", "int4", 2**31 - 1, "int4", None),
    ("serial4", "int4", 4, "int4", None),
    ("small-int", "int2", -(2**15), "int2", None),
    ("int2", "int2", 2**15 - 1, None, None),
    ("int2-array", "int2[]", [1, -1], None, None),
    ("int2-vector", "int2vector", [1, 2, 3], None, None),
    ("int2-vector-array", "int2vector[]", [[1, 2], [3]], None, None),
    ("small-serial", "int2", 2, "int2", None),
    ("serial2", "int2", 3, "int2", None),
    ("bit", "bit(5)", (5, b"\xb0"), None, None),
    ("bit-array", "bit(3)[]", [(3, b"\xa0"), (3, b"\x20")], None, None),
    ("bit-varying", "varbit", (3, b"\xa0"), "varbit", None),
    ("varbit", "varbit", (10, b"\xff\xc0"), None, None),
    ("varbit-array", "varbit[]", [(1, b"\x80"), (0, b"")], None, None),
    ("bytea", "bytea", bytes(range(256)), None, None),
    ("bytea-array", "bytea[]", [b"\x00\x01", b""], None, None),
    ("char", "char(3)", (3, b"ab "), None, None),
    ("char-array", "char(2)[]", [(2, b"xy"), (2, b"z ")], None, None),
    ("varchar", "varchar", (None, "héllo".encode()), None, None),
    ("varchar-array", "varchar[]", [(None, b"a"), (None, b"")], None, None),
    ("cidr", "cidr", "10.0.0.0/8", None, None),
    ("cidr-array", "cidr[]", ["10.0.0.0/8", "2001:db8::/32"], None, None),
    ("inet", "inet", "192.168.0.1/24", None, None),
    ("inet-array", "inet[]", ["192.168.0.1", "::1"], None, None),
    ("macaddr", "macaddr", MAC, None, None),
    ("macaddr-array", "macaddr[]", [MAC], None, None),
    ("macaddr8", "macaddr8", MAC8, None, None),
    ("macaddr8-array", "macaddr8[]", [MAC8], None, None),
    ("box", "box", (pt(0, 0), pt(2, 3)), None, None),
    ("box-array", "box[]", [(pt(-1, -1), pt(1, 1))], None, None),
    ("circle", "circle", (pt(1, 1), f64(2.5)), None, None),
    ("circle-array", "circle[]", [(pt(0, 0), f64(1))], None, None),
    ("line", "line", (pt(1, -1), pt(0, 0)), None, None),
    ("line-array", "line[]", [(pt(0, 1), pt(-3, 0))], None, None),
    ("lseg", "lseg", (pt(0, 0), pt(1, 1)), None, None),
    ("lseg-array", "lseg[]", [(pt(0, 0), pt(1, 1))], None, None),
    ("path", "path", [pt(0, 0), pt(1, 1), pt(2, 0)], None, None),
    ("path-array", "path[]", [[pt(0, 0), pt(1, 1)]], None, None),
    ("point", "point", pt(1.5, -2.25), None, None),
    ("point-array", "point[]", [pt(0, 0), pt(1e-300, 1e300)], None, None),
    ("polygon", "polygon", [pt(0, 0), pt(1, 0), pt(0, 1)], None, None),
    ("polygon-array", "polygon[]", [[pt(0, 0), pt(1, 0), pt(0, 1)]], None, None),
    ("date", "date", ymd(2024, 2, 29), None, None),
    ("date", "date", ymd(-43, 3, 15), None, None),
    ("date", "date", Case("positive-infinity"), None, None),
    ("date", "date", ymd(5874897, 12, 31), None, None),
    ("date-array", "date[]", [ymd(2000, 1, 1), Case("negative-infinity")], None, None),
    ("interval", "daterange", RANGE, None, None),
    ("interval-array", "daterange[]", [RANGE], None, None),
    ("time", "time", clock(12, 34, 56, 789), None, None),
    ("time-array", "time[]", [clock(0, 0, 0), clock(23, 59, 59, 999999)], None, None),
    ("time-tz", "timetz", {"timesonze": "+05:30", "time": clock(12, 0, 0, 5)}, None, None),
    ("time-tz-array", "timetz[]", [{"timesonze": "-08", "time": clock(1, 2, 3)}], None, None),
    ("timestamp", "timestamp", TS, None, None),
    ("timestamp", "timestamp", TS_BC, None, None),
    ("timestamp", "timestamp", TS_FAR, None, None),
    ("timestamp", "timestamp", TS_INF, None, None),
    ("timestamp-array", "timestamp[]", [TS, TS_INF], None, None),
    ("timestamp-tz", "timestamptz", TSTZ, None, None),
    ("timestamp-tz-array", "timestamptz[]", [TSTZ], None, None),
    ("json", "json", '{"b": 1, "a": [1, 2], "b": 12345678901234567890}', None, None),
    ("json-array", "json[]", ['{"x":1}', "[]"], None, None),
    ("jsonb", "jsonb", '{"b":1,"a":[1,2]}', None, '{"a": [1, 2], "b": 1}'),
    ("jsonb-array", "jsonb[]", ['{"x":1}'], None, ['{"x": 1}']),
    ("money", "money", "12.34", None, None),
    ("money", "money", "-1234567.89", None, None),
    ("money-array", "money[]", ["1.00", "0.01"], None, None),
    ("pg-lsn", "pg_lsn", 0x16B3748, None, None),
    ("pg-lsn-array", "pg_lsn[]", [0, 2**40 + 5], None, None),
    ("pg-snapshot", "pg_snapshot", (10, 20, [12, 15]), None, None),
    ("txid-snapshot", "int8", 99, "int8", None),
    ("name", "name", "a_name", None, None),
    ("name-array", "name[]", ["x", "y"], None, None),
    ("text", "text", "it's ünïcode ✓", None, None),
    ("text-array", "text[]", ["a", "b c", "", 'q"uote'], None, None),
    ("xml", "xml", "<a>1</a>", None, None),
    ("xml-array", "xml[]", ["<a/>", "<b>2</b>"], None, None),
    ("ts-query", "tsquery", "'fat' & 'rat'", None, None),
    ("ts-vector", "tsvector", LEXEMES, None, None),
    ("uuid", "uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None, None),
    ("uuid-array", "uuid[]", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], None, None),
    ("hstore", "hstore", [("a", "1"), ("b", None)], None, None),
]
