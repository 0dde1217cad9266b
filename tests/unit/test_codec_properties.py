"""Round-trips of every pg-value case and of whole calls; malformed and partial input."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.wit.codec import (
    Codec,
    CodecLimits,
    DecodeError,
    EncodeError,
    Incomplete,
    decode_sleb128,
    decode_uleb128,
    encode_sleb128,
    encode_uleb128,
)
from provider.wit.model import Primitive, VariantType, WitType, postgres_package
from provider.wit.values import Case, Err, Ok
from tests.wit_strategies import case_values, values_of

PACKAGE = postgres_package()
CODEC = Codec()
PG_VALUE = PACKAGE.type("types", "pg-value")
assert isinstance(PG_VALUE, VariantType)
QUERY = PACKAGE.function("query", "query")
EXEC = PACKAGE.function("prepared", "exec")


def same(a: Any, b: Any) -> bool:
    """Equality that treats -0.0 and 0.0 as different (the codec must keep the sign)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    return bool(a == b)


@pytest.mark.parametrize("case_name", [name for name, _ in PG_VALUE.cases])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_pg_value_case_roundtrips(case_name: str, data: st.DataObject) -> None:
    payload_type = dict(PG_VALUE.cases)[case_name]
    value = data.draw(case_values(case_name, payload_type))
    encoded = CODEC.encode_values([PG_VALUE], [value])
    assert CODEC.decode_values([PG_VALUE], encoded) == (value,)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_whole_calls_roundtrip(data: st.DataObject) -> None:
    for types in (QUERY.param_types, QUERY.results, EXEC.param_types, EXEC.results):
        values = tuple(data.draw(values_of(t)) for t in types)
        assert CODEC.decode_values(types, CODEC.encode_values(types, values)) == values


@settings(max_examples=300, deadline=None)
@given(value=st.integers(-(2**63), 2**63 - 1))
def test_sleb128_roundtrip_and_minimal(value: int) -> None:
    out = bytearray()
    encode_sleb128(value, out)
    assert decode_sleb128(bytes(out), 0, 64) == (value, len(out))
    assert len(out) <= 10


@settings(max_examples=300, deadline=None)
@given(value=st.integers(0, 2**64 - 1))
def test_uleb128_roundtrip(value: int) -> None:
    out = bytearray()
    encode_uleb128(value, out)
    assert decode_uleb128(bytes(out), 0, 64) == (value, len(out))


@pytest.mark.parametrize("type_name", ["f32", "f64"])
@pytest.mark.parametrize("value", [0.0, -0.0, math.inf, -math.inf, 5e-324, 1.5])
def test_floats_keep_sign_and_specials(type_name: str, value: float) -> None:
    t = Primitive(type_name)
    (decoded,) = CODEC.decode_values([t], CODEC.encode_values([t], [value]))
    if type_name == "f32" and value == 5e-324:
        assert decoded == 0.0  # below f32's smallest denormal
    else:
        assert same(decoded, value)
    (nan,) = CODEC.decode_values([t], CODEC.encode_values([t], [math.nan]))
    assert math.isnan(nan)


def test_every_prefix_is_incomplete_not_malformed() -> None:
    rows = [[{"column-name": "c", "value": Case("text-array", ["a", "βγ"])}]]
    encoded = CODEC.encode_values(QUERY.results, [Ok(rows)])
    for cut in range(len(encoded)):
        with pytest.raises(Incomplete):
            CODEC.decode_values(QUERY.results, encoded[:cut], final=False)
        with pytest.raises(DecodeError, match="ends inside"):
            CODEC.decode_values(QUERY.results, encoded[:cut], final=True)
    assert CODEC.decode_values(QUERY.results, encoded, final=False) == (Ok(rows),)


STRING_PG = [Primitive("string"), PG_VALUE]


@pytest.mark.parametrize(
    ("types", "data", "message"),
    [
        ([Primitive("bool")], b"\x02", "bool byte"),
        ([PG_VALUE], b"\x61", "case index 97 out of range"),
        ([PG_VALUE], b"\x06\x05", "bool byte"),  # bool case with payload 5
        ([Primitive("u32")], b"\x80\x80\x80\x80\x80\x00", "longer than 5 bytes"),
        ([Primitive("u32")], b"\xff\xff\xff\xff\x1f", "does not fit in u32"),
        ([Primitive("s16")], b"\x80\x80\x04", "does not fit in s16"),
        ([Primitive("u64")], b"\x80" * 10 + b"\x00", "longer than 10 bytes"),
        ([Primitive("string")], b"\x02\xc3\x28", "not valid UTF-8"),
        ([Primitive("string")], b"\x03\xed\xa0\x80", "not valid UTF-8"),  # a surrogate
        ([Primitive("char")], b"\xff", "cannot start"),
        ([Primitive("string")], b"\x01a\x00", "1 trailing bytes"),
        (QUERY.results, b"\x02", "result discriminant 2"),
        ([PACKAGE.type("types", "lexeme")], b"\x07", "option discriminant 7"),
        ([PACKAGE.type("types", "lexeme-weight")], b"\x04", "out of range"),
        (STRING_PG, b"\x00\x06", "ends inside"),
    ],
)
def test_malformed_input_raises_decode_error(
    types: list[WitType], data: bytes, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        CODEC.decode_values(types, data)


def test_lengths_past_the_limit_are_refused_before_allocation() -> None:
    small = Codec(CodecLimits(max_length=10))
    with pytest.raises(DecodeError, match="exceeds the limit of 10"):
        small.decode_values([Primitive("string")], b"\x0b" + b"x" * 11)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        # A list claiming 2^32-1 elements in 5 bytes: refused, nothing allocated.
        small.decode_values(QUERY.param_types[1:], b"\xff\xff\xff\xff\x0f", final=False)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        small.decode_values([PG_VALUE], b"\x24" + b"\x0b" + b"\x00" * 11)  # bytea
    # Within the limit, a length larger than the input is only "need more bytes".
    with pytest.raises(Incomplete):
        small.decode_values([Primitive("string")], b"\x0a" + b"x" * 3, final=False)


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=64))
def test_random_bytes_only_ever_decode_or_raise_decode_error(data: bytes) -> None:
    for types in (QUERY.param_types, QUERY.results, EXEC.param_types, EXEC.results):
        with contextlib.suppress(DecodeError):
            CODEC.decode_values(types, data)


@pytest.mark.parametrize(
    ("wit_type", "value"),
    [
        (Primitive("u8"), 256),
        (Primitive("s8"), -129),
        (Primitive("u32"), -1),
        (Primitive("s64"), 2**63),
        (Primitive("u64"), True),  # bool is not an integer here
        (Primitive("string"), b"bytes"),
        (Primitive("string"), "\ud800"),
        (Primitive("bool"), 1),
        (Primitive("f32"), 1e300),
        (PG_VALUE, Case("no-such-case", 1)),
        (PG_VALUE, ("int4", 1)),
        (PG_VALUE, Case("null", 5)),
        (PG_VALUE, Case("bytea", "text")),
        (PG_VALUE, Case("bit", (1,))),
        (QUERY.results[0], [[{"column-name": "c"}]]),
        (QUERY.results[0], Ok([[{"column-name": "c"}]])),
        (EXEC.results[0], Err(Case("query-error", "not a query-error"))),
    ],
)
def test_values_that_do_not_fit_raise_encode_error(wit_type: WitType, value: Any) -> None:
    with pytest.raises(EncodeError):
        CODEC.encode_values([wit_type], [value])


def test_unit_result_sides_refuse_payloads() -> None:
    batch_result = PACKAGE.function("query", "query-batch").results[0]
    with pytest.raises(EncodeError, match="carries no value"):
        CODEC.encode_values([batch_result], [Ok("surprise")])


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_two_field_record_fast_path_matches_the_general_record_path(data: st.DataObject) -> None:
    from provider.wit.codec import _record_decoder, _two_field_record_decoder
    from provider.wit.model import RecordType

    entry = PACKAGE.type("types", "result-row-entry")
    assert isinstance(entry, RecordType)
    fields = tuple((name, CODEC.decoder(t)) for name, t in entry.fields)
    encoded = CODEC.encode_values([entry], [data.draw(values_of(entry))]) + b"\x00"
    assert _two_field_record_decoder(fields)(encoded, 0) == _record_decoder(fields)(encoded, 0)
    for cut in (1, len(encoded) // 2):
        for decode in (_two_field_record_decoder(fields), _record_decoder(fields)):
            with pytest.raises(Incomplete):
                decode(encoded[:cut], 0)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_two_field_record_encoder_fast_path_matches_the_general_path(data: st.DataObject) -> None:
    from provider.wit.codec import _record_encoder, _two_field_record_encoder
    from provider.wit.model import RecordType

    entry = PACKAGE.type("types", "result-row-entry")
    assert isinstance(entry, RecordType)
    fields = tuple((name, CODEC.encoder(t)) for name, t in entry.fields)
    value = data.draw(values_of(entry))
    fast, general = bytearray(), bytearray()
    _two_field_record_encoder(fields, entry.name)(value, fast)
    _record_encoder(fields, entry.name)(value, general)
    assert fast == general
    for encode in (_two_field_record_encoder(fields, "e"), _record_encoder(fields, "e")):
        with pytest.raises(EncodeError, match="lacks"):
            encode({"column-name": "x"}, bytearray())


def _run_steps(types: Any, buf: bytes, **options: Any) -> tuple[tuple[Any, ...], int]:
    steps = CODEC.decode_values_in_steps(types, buf, **options)
    pauses = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value, pauses
        pauses += 1


@settings(max_examples=200, deadline=None)
@given(data=st.data(), step_items=st.integers(1, 5))
def test_decoding_in_steps_is_decoding_whole(data: st.DataObject, step_items: int) -> None:
    """The stepped decoder (used for large parameters) pinned to `decode_values`."""
    for types in (QUERY.param_types, QUERY.results, EXEC.param_types, EXEC.results):
        values = tuple(data.draw(values_of(t)) for t in types)
        encoded = CODEC.encode_values(types, values)
        decoded, _ = _run_steps(types, encoded, step_items=step_items)
        assert decoded == CODEC.decode_values(types, encoded)
        if len(encoded) > 1:
            with pytest.raises(Incomplete):
                _run_steps(types, encoded[:-1], final=False, step_items=step_items)
            with pytest.raises(DecodeError):
                _run_steps(types, encoded[:-1], step_items=step_items)


def test_decoding_in_steps_pauses_every_few_thousand_items() -> None:
    values = ("SELECT 1", [Case("null")] * 10_000)
    decoded, pauses = _run_steps(QUERY.param_types, CODEC.encode_values(QUERY.param_types, values))
    assert decoded == values and pauses == 20
