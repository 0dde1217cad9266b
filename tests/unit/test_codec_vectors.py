"""Every vector in ../shared/spec/wrpc-nats.md, byte for byte, both directions."""

from __future__ import annotations

from typing import Any

import pytest

from provider.wit.codec import Codec
from provider.wit.model import (
    Primitive,
    ResultType,
    TupleType,
    WitType,
    postgres_package,
)
from provider.wit.values import Case, Err, Ok

PACKAGE = postgres_package()
CODEC = Codec()


def prim(name: str) -> Primitive:
    return Primitive(name)


def roundtrip(types: list[WitType], values: list[Any], expected_hex: str) -> None:
    expected = bytes.fromhex(expected_hex)
    assert CODEC.encode_values(types, values) == expected
    assert CODEC.decode_values(types, expected) == tuple(values)


def test_mixed_tuple_vector() -> None:
    types: list[WitType] = [
        prim("bool"),
        prim("u8"),
        prim("string"),
        prim("u32"),
        TupleType((ResultType(prim("bool"), None),)),
    ]
    roundtrip(types, [True, 0xFE, "test", 0x42, (Ok(True),)], "01 fe 04 74 65 73 74 42 00 01")


@pytest.mark.parametrize(
    ("type_name", "value", "expected_hex"),
    [
        ("u32", 624485, "e5 8e 26"),
        ("u32", 2**32 - 1, "ff ff ff ff 0f"),
        ("s32", -123456, "c0 bb 78"),
        ("s64", -1, "7f"),
        ("s64", -2, "7e"),
        ("s8", -1, "ff"),
        ("s16", -1, "7f"),
        ("u16", 300, "ac 02"),
        ("f64", 1.5, "00 00 00 00 00 00 f8 3f"),
    ],
)
def test_scalar_vectors(type_name: str, value: Any, expected_hex: str) -> None:
    roundtrip([prim(type_name)], [value], expected_hex)


def test_query_params_vector() -> None:
    query = PACKAGE.function("query", "query")
    expected = "0f" + b"SELECT $1::text".hex() + "01 58 02" + b"hi".hex()
    roundtrip(list(query.param_types), ["SELECT $1::text", [Case("text", "hi")]], expected)


def test_query_result_vector() -> None:
    query = PACKAGE.function("query", "query")
    rows = [[{"column-name": "?column?", "value": Case("int4", 1)}]]
    expected = "00 01 01 08" + b"?column?".hex() + "11 01"
    roundtrip(list(query.results), [Ok(rows)], expected)


def test_error_and_unit_result_vectors() -> None:
    query = PACKAGE.function("query", "query")
    roundtrip(list(query.results), [Err(Case("unexpected", "boom"))], "01 02 04" + b"boom".hex())
    batch = PACKAGE.function("query", "query-batch")
    roundtrip(list(batch.results), [Ok()], "00")
    exec_ = PACKAGE.function("prepared", "exec")
    roundtrip(list(exec_.results), [Ok(3)], "00 03")


def test_hashable_f64_is_uleb_sleb_then_raw_byte() -> None:
    hashable_f64 = PACKAGE.type("types", "hashable-f64")
    # 1.5 = 6755399441055744 * 2^-52: mantissa uLEB128, exponent sLEB128 (-52 = 0x4c), sign raw.
    encoded = CODEC.encode_values([hashable_f64], [(6755399441055744, -52, 1)])
    assert encoded == bytes.fromhex("80 80 80 80 80 80 80 0c 4c 01")
    negative_zero = CODEC.encode_values([hashable_f64], [(0, -1075, -1)])
    assert negative_zero[-1:] == b"\xff"  # s8 -1 as one raw byte, not LEB128
    assert CODEC.decode_values([hashable_f64], negative_zero) == ((0, -1075, -1),)
