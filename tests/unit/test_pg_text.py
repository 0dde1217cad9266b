"""PostgreSQL text formats and float decomposition (pure functions, no server)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.postgres.values import text as t
from provider.wit.values import Case


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, (6755399441055744, -52, 1)),
        (math.inf, (4503599627370496, 972, 1)),
        (math.nan, (6755399441055744, 972, 1)),
        (-0.0, (0, -1075, -1)),
    ],
)
def test_hashable_f64_matches_rusts_integer_decode(
    value: float, expected: tuple[int, int, int]
) -> None:
    assert t.hashable_f64(value) == expected


def test_hashable_f32_infinity() -> None:
    assert t.hashable_f32(math.inf) == (8388608, 105, 1)


@settings(max_examples=500)
@given(bits=st.integers(0, 2**64 - 1))
def test_every_f64_bit_pattern_survives(bits: int) -> None:
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    back = t.float_from_hashable_f64(t.hashable_f64(value))
    if math.isnan(value):
        assert math.isnan(back)  # NaN stays NaN (upstream v2 turns it into infinity)
    else:
        assert struct.pack("<d", back) == struct.pack("<d", value)


@settings(max_examples=500)
@given(bits=st.integers(0, 2**32 - 1))
def test_every_f32_bit_pattern_survives(bits: int) -> None:
    value = struct.unpack("<f", struct.pack("<I", bits))[0]
    back = t.float_from_hashable_f32(t.hashable_f32(value))
    if math.isnan(value):
        assert math.isnan(back)
    else:
        assert struct.pack("<f", back) == struct.pack("<f", value)


def test_denormals_and_hand_written_tuples() -> None:
    assert t.float_from_hashable_f64(t.hashable_f64(5e-324)) == 5e-324
    assert t.float_from_hashable_f64((3, 0, 1)) == 3.0  # not integer_decode's form: m * 2^e
    assert t.float_from_hashable_f64((3, 1, -1)) == -6.0


@pytest.mark.parametrize(
    ("text", "case"),
    [
        ("2024-02-29", Case("ymd", (2024, 2, 29))),
        ("0044-03-15 BC", Case("ymd", (-43, 3, 15))),
        ("infinity", Case("positive-infinity")),
        ("-infinity", Case("negative-infinity")),
        ("5874897-12-31", Case("ymd", (5874897, 12, 31))),
    ],
)
def test_dates_both_ways(text: str, case: Case) -> None:
    assert t.parse_date(text) == case
    assert t.format_date(case) == text


def test_timestamps_and_zones() -> None:
    parsed = t.parse_timestamp_tz("2024-01-01 12:30:00.5+05:30")
    assert parsed["offset"] == Case("eastern-hemisphere-secs", 19800)
    assert parsed["timestamp"]["time"] == {"hour": 12, "min": 30, "sec": 0, "micro": 500000}
    assert t.parse_timestamp_tz("2024-01-01 00:00:00-08")["offset"] == Case(
        "western-hemisphere-secs", 28800
    )
    assert t.format_timestamp_tz(parsed) == "2024-01-01 12:30:00.500000+05:30:00"
    assert t.parse_time_tz("01:02:03-08") == {
        "timesonze": "-08",
        "time": {"hour": 1, "min": 2, "sec": 3, "micro": 0},
    }
    with pytest.raises(t.PgTextError):
        t.parse_timestamp("yesterday")


def test_tsvector_with_quotes_positions_and_weights() -> None:
    text = "'don''t':3B 'fat':1A,4 'sat'"
    lexemes = t.parse_tsvector(text)
    assert lexemes == [
        {"position": 3, "weight": "B", "data": "don't"},
        {"position": 1, "weight": "A", "data": "fat"},
        {"position": 4, "weight": None, "data": "fat"},
        {"position": None, "weight": None, "data": "sat"},
    ]
    assert t.parse_tsvector(t.format_tsvector(lexemes)) == lexemes
    assert t.parse_tsvector("") == []


def test_hstore_both_ways() -> None:
    pairs = [("a", "1"), ('q"uote', None), ("back\\slash", "x y")]
    assert t.parse_hstore(t.format_hstore(pairs)) == pairs
    assert t.parse_hstore('"a"=>"1", "b"=>NULL') == [("a", "1"), ("b", None)]


def test_array_literals_both_ways() -> None:
    assert t.parse_array_literal('{a,"b c",NULL,"",{1,2}}') == ["a", "b c", None, "", ["1", "2"]]
    assert t.parse_array_literal("[0:1]={x,y}") == ["x", "y"]
    assert t.parse_array_literal("{}") == []
    items = ["plain", 'q"uote', "back\\slash", "", None, "NULL"]
    assert t.parse_array_literal(t.format_array_literal(items)) == items
    with pytest.raises(t.PgTextError):
        t.parse_array_literal('{"unterminated')


def test_bits_lsn_money_points() -> None:
    assert t.parse_bits("10110") == (5, b"\xb0")
    assert t.format_bits(5, b"\xb0") == "10110"
    assert t.parse_bits("") == (0, b"")
    assert t.format_lsn(t.parse_lsn("16/B374D848")) == "16/B374D848"
    assert t.parse_money("-$1,234.56") == "-1234.56"
    assert t.parse_points("[(0,0),(1.5,-2)]") == [(0.0, 0.0), (1.5, -2.0)]
    assert t.parse_points("((1e+300,Infinity))") == [(1e300, math.inf)]
