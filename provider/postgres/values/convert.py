"""pg-value ⇄ asyncpg: result columns to `pg-value` cases, `pg-value` parameters to asyncpg.

Result columns: the case is chosen by the column's PostgreSQL type (one converter per column,
built once per statement from its attributes); NULL is `null` whatever the type; a type with
no case, an array holding NULLs or of more than one dimension travels as `text` in PostgreSQL's
own text form, so no column type can fail a query.

Parameters: a case names the PostgreSQL type its value is sent as. It may be sent to a parameter
the server inferred as that type or a compatible one (see `COMPATIBLE`); anything else is a
`ParamError` naming the parameter and both types. Values are handed to asyncpg in the form its
codec for the *inferred* type takes; the types in `TEXT_TYPES` travel in PostgreSQL's text
format, so PostgreSQL's own input functions validate them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import InvalidOperation
from typing import Any

from provider.postgres.values import text as t
from provider.wit.values import Case

# Types exchanged in PostgreSQL's text format, with their arrays (see connections.py). Text is
# lossless where Python's types are not (BC and far-future dates, infinities, the session's time
# zone, numeric scale), and it keeps asyncpg's own text-array decoding, which crashes the
# process on an empty element (`ARRAY[''::tsvector]`), out of the picture: we parse arrays.
TEXT_TYPES = (
    "numeric", "money", "date", "time", "timetz", "timestamp", "timestamptz", "interval",
    "inet", "cidr", "macaddr", "macaddr8", "bit", "varbit", "tsvector", "tsquery", "pg_lsn",
    "xml", "json", "jsonb", "uuid", "int2vector", "oidvector", "path", "polygon",
)  # fmt: skip
# Element types whose arrays asyncpg decodes in binary into the Python values RESULT_CASES
# expects (every other array type is exchanged as text; see connections.py).
BINARY_ELEMENTS = (
    "int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar", "bpchar", "name",
    "bytea", "char", "point", "line", "lseg", "box", "circle",
)  # fmt: skip
# Session settings the text parsers rely on.
SESSION_SETTINGS = {
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "lc_monetary": "C",  # money as '$1,234.56' whatever the server's locale
}


class ParamError(ValueError):
    """A parameter cannot be sent as the type the server inferred for it."""


# --- result columns -------------------------------------------------------------------------------

Payload = Callable[[Any], Any]


def _point(p: Any) -> tuple[Any, Any]:
    return (t.hashable_f64(p[0]), t.hashable_f64(p[1]))


def _varbit(text: str) -> tuple[int | None, bytes]:
    length, data = t.parse_bits(text)
    return length, data


def _bpchar(text: str) -> tuple[int, bytes]:
    # bpchar values arrive padded to the declared length, so the character count is that length.
    return len(text), text.encode()


def _pg_char(value: bytes | str) -> tuple[int, bytes]:
    return 1, value if isinstance(value, bytes) else value.encode()


def _snapshot(value: Any) -> tuple[int, int, list[int]]:
    xmin, xmax, xip = value
    return xmin, xmax, list(xip)


def _identity(value: Any) -> Any:
    return value


# PostgreSQL type name → (pg-value case, payload from asyncpg's value).
RESULT_CASES: dict[str, tuple[str, Payload]] = {
    "int2": ("int2", _identity),
    "int4": ("int4", _identity),
    "int8": ("int8", _identity),
    "float4": ("float4", t.hashable_f32),
    "float8": ("float8", t.hashable_f64),
    "numeric": ("numeric", _identity),
    "money": ("money", t.parse_money),
    "bool": ("bool", _identity),
    "text": ("text", _identity),
    "varchar": ("varchar", lambda v: (None, v.encode())),
    "bpchar": ("char", _bpchar),
    "char": ("char", _pg_char),
    "name": ("name", _identity),
    "bytea": ("bytea", bytes),
    "json": ("json", _identity),
    "jsonb": ("jsonb", _identity),
    "uuid": ("uuid", _identity),
    "xml": ("xml", _identity),
    "date": ("date", t.parse_date),
    "time": ("time", t.parse_time),
    "timetz": ("time-tz", t.parse_time_tz),
    "timestamp": ("timestamp", t.parse_timestamp),
    "timestamptz": ("timestamp-tz", t.parse_timestamp_tz),
    "inet": ("inet", _identity),
    "cidr": ("cidr", _identity),
    "macaddr": ("macaddr", t.parse_mac),
    "macaddr8": ("macaddr8", t.parse_mac),
    "bit": ("bit", t.parse_bits),
    "varbit": ("varbit", _varbit),
    "point": ("point", _point),
    # line {A,B,C} (Ax + By + C = 0) has no two-point form without rounding: ((A, B), (C, 0)).
    "line": ("line", lambda v: ((t.hashable_f64(v[0]), t.hashable_f64(v[1])), _point((v[2], 0.0)))),
    "lseg": ("lseg", lambda v: (_point(v[0]), _point(v[1]))),
    "box": ("box", lambda v: (_point(v[1]), _point(v[0]))),  # asyncpg: (high, low)
    "path": ("path", lambda v: [_point(p) for p in t.parse_points(v)]),
    "polygon": ("polygon", lambda v: [_point(p) for p in t.parse_points(v)]),
    "circle": ("circle", lambda v: (_point(v[0]), t.hashable_f64(v[1]))),
    "pg_lsn": ("pg-lsn", t.parse_lsn),
    "tsvector": ("ts-vector", t.parse_tsvector),
    "tsquery": ("ts-query", _identity),
    "hstore": ("hstore", t.parse_hstore),
    "int2vector": ("int2-vector", lambda v: [int(n) for n in v.split()]),
    "daterange": ("interval", t.parse_date_range),  # None for 'empty': comes back as text
    "pg_snapshot": ("pg-snapshot", _snapshot),
    "txid_snapshot": ("pg-snapshot", _snapshot),
}

# Element case → its array case, where the WIT has one.
ARRAY_CASES = {
    "int8": "int8-array", "bool": "bool-array", "float8": "float8-array",
    "float4": "float4-array", "int4": "int4-array", "numeric": "numeric-array",
    "int2": "int2-array", "int2-vector": "int2-vector-array", "bit": "bit-array",
    "varbit": "varbit-array", "bytea": "bytea-array", "char": "char-array",
    "varchar": "varchar-array", "cidr": "cidr-array", "inet": "inet-array",
    "macaddr": "macaddr-array", "macaddr8": "macaddr8-array", "box": "box-array",
    "circle": "circle-array", "line": "line-array", "lseg": "lseg-array", "path": "path-array",
    "point": "point-array", "polygon": "polygon-array", "date": "date-array",
    "interval": "interval-array", "time": "time-array", "time-tz": "time-tz-array",
    "timestamp": "timestamp-array", "timestamp-tz": "timestamp-tz-array", "json": "json-array",
    "jsonb": "jsonb-array", "money": "money-array", "pg-lsn": "pg-lsn-array",
    "name": "name-array", "text": "text-array", "xml": "xml-array", "uuid": "uuid-array",
}  # fmt: skip

ColumnConverter = Callable[[Any], Case]
NULL = Case("null")


def column_converter(type_name: str) -> ColumnConverter:
    """The converter for one result column, from its asyncpg `Type` name.

    (Types we exchange as text are named by our codec registration, so int2vector is
    "int2vector" here, not asyncpg's own "int2vector[]".)
    """
    if type_name.endswith("[]"):
        return _array_converter(type_name[:-2])
    found = RESULT_CASES.get(type_name)
    if found is None:
        return _convert_as_text
    case, payload = found

    def convert(value: Any) -> Case:
        if value is None:
            return NULL
        converted = payload(value)
        if converted is None:  # a value with no WIT form (an empty daterange): its text
            return Case("text", pg_text_of(value))
        return Case(case, converted)

    return convert


def _array_converter(element_type: str) -> ColumnConverter:
    found = RESULT_CASES.get(element_type)
    array_case = ARRAY_CASES.get(found[0]) if found else None
    if found is None or array_case is None:
        return _convert_as_text
    _, payload = found

    def convert(value: Any) -> Case:
        if value is None:
            return NULL
        # Arrays of text types arrive as PostgreSQL's array literal; others as lists.
        items = t.parse_array_literal(value) if isinstance(value, str) else value
        if any(v is None or isinstance(v, list) for v in items):
            return Case("text", pg_text_of(value))  # NULL elements or 2-D: no WIT form
        payloads = [payload(v) for v in items]
        if any(p is None for p in payloads):
            return Case("text", pg_text_of(value))  # e.g. an empty daterange
        return Case(array_case, payloads)

    return convert


def _convert_as_text(value: Any) -> Case:
    return NULL if value is None else Case("text", pg_text_of(value))


def pg_text_of(value: Any) -> str:
    """PostgreSQL's text form of a value asyncpg decoded (for types with no pg-value case)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, list):
        return "{" + ",".join(_array_element_text(v) for v in value) + "}"
    return str(value)  # ranges, records, arrays of text types arrive as PostgreSQL's text


def _array_element_text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return pg_text_of(value)
    return _quote_if_needed(pg_text_of(value))


def _quote_if_needed(text: str) -> str:
    if text == "" or any(c in text for c in ' ,{}()"\\') or text.upper() == "NULL":
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def row_converters(attributes: Sequence[Any]) -> list[tuple[str, ColumnConverter]]:
    """(column name, converter) for each column of a statement's result."""
    return [(a.name, column_converter(a.type.name)) for a in attributes]


def convert_rows(
    rows: Sequence[Any], converters: list[tuple[str, ColumnConverter]]
) -> list[list[dict[str, Any]]]:
    return [
        [
            {"column-name": name, "value": convert(value)}
            for (name, convert), value in zip(converters, row, strict=True)
        ]
        for row in rows
    ]


# --- parameters -----------------------------------------------------------------------------------


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamError(f"bytes are not valid UTF-8: {exc.reason}") from None


def _geometry(kind: str) -> Payload:
    def make(payload: Any) -> Any:
        import asyncpg

        f = t.float_from_hashable_f64

        def point(p: Any) -> Any:
            return asyncpg.Point(f(p[0]), f(p[1]))

        if kind == "point":
            return point(payload)
        if kind == "line":
            (a, b), (c, _) = payload
            return asyncpg.Line(f(a), f(b), f(c))
        if kind == "lseg":
            return asyncpg.LineSegment(point(payload[0]), point(payload[1]))
        if kind == "box":
            return asyncpg.Box(point(payload[1]), point(payload[0]))
        if kind == "path":
            return t.format_points(payload, f, "[", "]")
        if kind == "polygon":
            return t.format_points(payload, f, "(", ")")
        if kind == "circle":
            return asyncpg.Circle(point(payload[0]), f(payload[1]))
        raise AssertionError(kind)

    return make


def _numeric_text(text: str) -> str:
    t.parse_decimal(text)  # a clear invalid-params for "abc" before PostgreSQL sees it
    return text


def _bits(payload: tuple[int | None, bytes]) -> str:
    length, data = payload
    return t.format_bits(len(data) * 8 if length is None else length, data)


def _snapshot_param(payload: tuple[int, int, list[int]]) -> tuple[int, int, list[int]]:
    xmin, xmax, xip = payload
    return xmin, xmax, list(xip)


# pg-value case → (PostgreSQL type it names, asyncpg value from the WIT payload).
PARAM_CASES: dict[str, tuple[str, Payload]] = {
    **{c: ("int8", _identity) for c in ("big-int", "int8", "big-serial", "serial8")},
    **{c: ("int4", _identity) for c in ("integer", "int", "int4", "serial", "serial4")},
    **{c: ("int2", _identity) for c in ("small-int", "int2", "small-serial", "serial2")},
    "bool": ("bool", _identity),
    "boolean": ("bool", _identity),
    "double": ("float8", t.float_from_hashable_f64),
    "float8": ("float8", t.float_from_hashable_f64),
    "real": ("float4", t.float_from_hashable_f32),
    "float4": ("float4", t.float_from_hashable_f32),
    "numeric": ("numeric", _numeric_text),
    "decimal": ("numeric", _numeric_text),
    "money": ("money", _identity),
    "int2-vector": ("int2vector", lambda items: " ".join(str(int(n)) for n in items)),
    "bit": ("bit", _bits),
    "bit-varying": ("varbit", _bits),
    "varbit": ("varbit", _bits),
    "bytea": ("bytea", bytes),
    "char": ("bpchar", lambda p: _utf8(p[1])),
    "varchar": ("varchar", lambda p: _utf8(p[1])),
    "cidr": ("cidr", _identity),
    "inet": ("inet", _identity),
    "macaddr": ("macaddr", t.format_mac),
    "macaddr8": ("macaddr8", t.format_mac),
    **{g: (g, _geometry(g)) for g in ("box", "circle", "line", "lseg", "path", "point", "polygon")},
    "date": ("date", t.format_date),
    "interval": ("daterange", t.format_date_range),
    "time": ("time", t.format_time),
    "time-tz": ("timetz", t.format_time_tz),
    "timestamp": ("timestamp", t.format_timestamp),
    "timestamp-tz": ("timestamptz", t.format_timestamp_tz),
    "json": ("json", _identity),
    "jsonb": ("jsonb", _identity),
    "pg-lsn": ("pg_lsn", t.format_lsn),
    "pg-snapshot": ("pg_snapshot", _snapshot_param),
    "txid-snapshot": ("int8", _identity),
    "name": ("name", _identity),
    "text": ("text", _identity),
    "xml": ("xml", _identity),
    "ts-query": ("tsquery", _identity),
    "ts-vector": ("tsvector", t.format_tsvector),
    "uuid": ("uuid", _identity),
    "hstore": ("hstore", t.format_hstore),
}


def _each(convert: Payload) -> Payload:
    def convert_items(items: Any) -> list[Any]:
        return [convert(item) for item in items]

    return convert_items


for _element_case, _array_case in ARRAY_CASES.items():
    _element_type, _element_payload = PARAM_CASES[_element_case]
    PARAM_CASES[_array_case] = (f"{_element_type}[]", _each(_element_payload))

_INTEGERS = {"int2", "int4", "int8"}


_TEXTS = {"text", "varchar", "bpchar", "name"}
# Inferred parameter type → the case types (and how) it also takes besides its own.
COMPATIBLE: dict[str, dict[str, Payload]] = {
    **{i: {j: _identity for j in _INTEGERS} for i in _INTEGERS},
    "numeric": {**{i: str for i in _INTEGERS}, "float4": t.float_text, "float8": t.float_text},
    "float4": {**{i: float for i in _INTEGERS}, "float8": _identity},
    "float8": {**{i: float for i in _INTEGERS}, "float4": _identity},
    "oid": {i: _identity for i in _INTEGERS},
    "money": {"numeric": _identity},
    "json": {"jsonb": _identity},
    "jsonb": {"json": _identity},
    "inet": {"cidr": _identity},
    "cidr": {"inet": _identity},
    "bit": {"varbit": _identity},
    "varbit": {"bit": _identity},
    "macaddr8": {"macaddr": _identity},
    "timestamptz": {"timestamp": _identity, "date": _identity},
    "timestamp": {"date": _identity},
    "txid_snapshot": {"pg_snapshot": _identity},
    # PostgreSQL's one-byte `"char"`: asyncpg's codec takes bytes.
    "char": {x: str.encode for x in ("bpchar", *_TEXTS)},
}


# Scalars that go to a text parameter as PostgreSQL would print them.
_SHOWN_AS_TEXT: dict[str, Payload] = {
    **{i: str for i in _INTEGERS},
    "float4": t.float_text,
    "float8": t.float_text,
    "numeric": _identity,
    "bool": lambda b: "true" if b else "false",
}


def _text_target(type_name: str, type_kind: str) -> bool:
    # Text cases go to any type PostgreSQL parses from text for us: its own input function
    # then validates the value (user enums, domains and unknown types included).
    return (
        type_name in _TEXTS
        or type_name in TEXT_TYPES
        or type_kind != "scalar"
        or type_name == "hstore"
    )


def param_value(index: int, value: Any, type_name: str, type_kind: str) -> Any:
    """The asyncpg value for parameter `$index` (1-based) holding pg-value `value`."""
    if not isinstance(value, Case):
        raise ParamError(f"parameter ${index}: not a pg-value")
    if value.tag == "null":
        return None
    found = PARAM_CASES.get(value.tag)
    if found is None:
        raise ParamError(f"parameter ${index}: unknown pg-value case {value.tag!r}")
    case_type, payload = found
    try:
        converted = payload(value.value)
    except ParamError as exc:
        raise ParamError(f"parameter ${index}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, InvalidOperation) as exc:
        raise ParamError(f"parameter ${index}: invalid {value.tag} value ({exc})") from None
    if case_type == type_name:
        return converted
    adapt = COMPATIBLE.get(type_name, {}).get(case_type)
    if adapt is not None:
        return adapt(converted)
    if case_type in _TEXTS and _text_target(type_name, type_kind) and not type_name.endswith("[]"):
        return converted
    if type_name in _TEXTS and case_type in _SHOWN_AS_TEXT:
        return _SHOWN_AS_TEXT[case_type](converted)  # e.g. an int4 for an untyped `$1`
    if case_type.endswith("[]") and type_name.endswith("[]"):
        element_adapt = COMPATIBLE.get(type_name[:-2], {}).get(case_type[:-2])
        if element_adapt is not None:
            return [element_adapt(v) for v in converted]
        if case_type[:-2] in _TEXTS and _text_target(type_name[:-2], "scalar"):
            return converted
    raise ParamError(
        f"parameter ${index}: pg-value `{value.tag}` (PostgreSQL {case_type}) "
        f"cannot be sent as PostgreSQL {type_name}"
    )


def param_values(values: Sequence[Any], parameter_types: Sequence[Any]) -> list[Any]:
    """asyncpg arguments for a statement's parameters (asyncpg `Type`s)."""
    if len(values) != len(parameter_types):
        raise ParamError(
            f"the statement takes {len(parameter_types)} parameters, {len(values)} were given"
        )
    return [
        param_value(i, value, pg_type.name, pg_type.kind)
        for i, (value, pg_type) in enumerate(zip(values, parameter_types, strict=True), start=1)
    ]
