"""The compiled row encoder is pinned to the general path: WIT values first, then the codec."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from provider.postgres.values.convert import column_converter
from provider.postgres.values.row_wire import RowWire, TimestampTzWire

WIRE = RowWire()


@st.composite
def timestamptz_texts(draw: st.DrawFn) -> str:
    """timestamptz as PostgreSQL prints it with DateStyle ISO (fraction without trailing 0s)."""
    year, month, day = (
        draw(st.integers(1, 9999)),
        draw(st.integers(1, 12)),
        draw(st.integers(1, 28)),
    )
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    micro = draw(st.integers(0, 999_999))
    fraction = f".{micro:06d}".rstrip("0") if micro else ""
    sign = draw(st.sampled_from("+-"))
    hours, minutes, seconds = (
        draw(st.integers(0, 15)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    offset = draw(st.sampled_from([f"{hours:02d}", f"{hours:02d}:{minutes:02d}",
                                   f"{hours:02d}:{minutes:02d}:{seconds:02d}"]))  # fmt: skip
    bc = draw(st.sampled_from(["", "", " BC"]))
    date = f"{year:04d}-{month:02d}-{day:02d}"
    return f"{date} {hour:02d}:{minute:02d}:{second:02d}{fraction}{sign}{offset}{bc}"


@given(st.lists(timestamptz_texts(), min_size=1, max_size=20))
def test_timestamptz_texts_encode_as_the_general_path(texts: list[str]) -> None:
    converters = [("at", column_converter("timestamptz"))]
    rows = [(text,) for text in texts]
    encode = RowWire().compile(converters, ["timestamptz"])
    assert encode(rows) == WIRE.general(rows, converters)
    assert encode(rows) == WIRE.general(rows, converters)  # again, from the tables


def test_other_shapes_take_the_general_path() -> None:
    fast = TimestampTzWire()
    for text in ("infinity", "-infinity", "12345-01-01 00:00:00+00", "2026-01-01 00:00:00",
                 "2026-01-01T00:00:00+00", "2026-01-01 00:00:00.1234567+00", "",
                 "2026-01-01 00:00:00+00 BC", "2026-01-01 00:00:00.+00", "2026-01-01 0a:00:00+00",
                 "2026-01-01 00:00:00+0",
                 "\uff12\uff10\uff12\uff16-01-01 00:00:00+00"):  # fmt: skip
        out = bytearray()
        assert not fast.write(text, out) and not out, text


def test_the_tables_stay_bounded() -> None:
    fast = TimestampTzWire()
    for day in range(fast.MAX_ENTRIES + 10):
        year, rest = divmod(day, 365)
        assert fast.write(f"{2000 + year:04d}-01-{1 + rest % 28:02d} 00:00:{day % 60:02d}+00",
                          bytearray())  # fmt: skip
    assert all(len(table) <= fast.MAX_ENTRIES for table in (fast._dates, fast._times))


# Raw values as asyncpg hands them over (text types arrive as str).
VALUES: dict[str, Any] = {
    "int2": st.integers(-(2**15), 2**15 - 1),
    "int4": st.integers(-(2**31), 2**31 - 1),
    "int8": st.integers(-(2**63), 2**63 - 1),
    "text": st.text(),
    "name": st.text(max_size=63),
    "numeric": st.sampled_from(["0", "-1.50", "NaN", "123456789012345678901234567890.000001"]),
    "json": st.sampled_from(['{"a": 1}', "[]", '"x"']),
    "jsonb": st.sampled_from(['{"a": 1}', "null"]),
    "xml": st.sampled_from(["<a/>", "text"]),
    "bool": st.booleans(),
    "timestamptz": st.one_of(timestamptz_texts(), st.sampled_from(["infinity", "-infinity"])),
    "float8": st.floats(allow_nan=False),
    "date": st.sampled_from(["2026-12-02", "infinity", "0044-03-15 BC"]),
    "uuid": st.uuids().map(str),
    "bytea": st.binary(max_size=300),
}
TYPES = sorted(VALUES)


@given(st.lists(st.sampled_from(TYPES), min_size=1, max_size=6), st.data())
def test_compiled_rows_equal_the_general_path(types: list[str], data: st.DataObject) -> None:
    converters = [(f"column {i} {name}", column_converter(name)) for i, name in enumerate(types)]
    rows = data.draw(
        st.lists(st.tuples(*(st.one_of(st.none(), VALUES[name]) for name in types)), max_size=5)
    )
    encode = WIRE.compile(converters, types)
    assert encode(rows) == WIRE.general(rows, converters)


def test_long_names_and_values_use_multi_byte_lengths() -> None:
    converters = [("n" * 200, column_converter("text"))]
    rows = [("é" * 100,), (None,)]
    assert WIRE.compile(converters, ["text"])(rows) == WIRE.general(rows, converters)
