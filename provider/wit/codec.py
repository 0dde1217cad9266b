"""The component-model value encoding wRPC uses on the wire (sans-IO: bytes in, values out).

Each WIT type is compiled once into a pair of small closures: an encoder that appends a value's
bytes to a `bytearray`, and a decoder that reads one value from `bytes` at an offset and returns
it with the next offset. Python values follow `provider.wit.values`.

Decoding is incremental: when the bytes end inside a value the decoder raises `Incomplete`
("need more bytes"), which is not an error; bytes that can never become a valid value raise
`DecodeError`, the one error type for malformed input. Lengths are checked against
`CodecLimits` before anything is allocated, LEB128 integers are bounded by their type's byte
count and range, and WIT types are finite (no recursion), so every decode ends after at most a
bounded amount of work per input byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from provider.wit.model import (
    EnumType,
    FlagsType,
    ListType,
    OptionType,
    Primitive,
    RecordType,
    ResultType,
    TupleType,
    VariantType,
    WitType,
)
from provider.wit.values import Case, EncodedList, Err, Ok


class CodecError(ValueError):
    """A value cannot be encoded or decoded."""


class DecodeError(CodecError):
    """The bytes are malformed: no amount of further input can make them valid."""


class EncodeError(CodecError):
    """A Python value does not fit its WIT type."""


class Incomplete(Exception):
    """The bytes end inside a value: more input is needed (not an error by itself)."""


@dataclass(frozen=True)
class CodecLimits:
    """Bounds on what a decoder accepts before allocating anything."""

    max_length: int = 64 * 1024 * 1024  # elements of a list, bytes of a string


Decoder = Callable[[bytes, int], tuple[Any, int]]
Encoder = Callable[[Any, bytearray], None]

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")

# (bits, signed) for LEB128 integers; max encoded length is ceil(bits / 7).
_LEB_INTEGERS = {
    "u16": (16, False),
    "u32": (32, False),
    "u64": (64, False),
    "s16": (16, True),
    "s32": (32, True),
    "s64": (64, True),
}


# --- LEB128 -------------------------------------------------------------------------------------


def decode_uleb128(buf: bytes, pos: int, bits: int) -> tuple[int, int]:
    """Unsigned LEB128 of at most `bits` bits at `pos`; returns (value, next position)."""
    value = 0
    shift = 0
    max_bytes = (bits + 6) // 7
    end = len(buf)
    for _ in range(max_bytes):
        if pos >= end:
            raise Incomplete
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >> bits:
                raise DecodeError(f"LEB128 value does not fit in u{bits}")
            return value, pos
        shift += 7
    raise DecodeError(f"LEB128 longer than {max_bytes} bytes for a {bits}-bit integer")


def decode_sleb128(buf: bytes, pos: int, bits: int) -> tuple[int, int]:
    """Signed LEB128 of at most `bits` bits at `pos`; returns (value, next position)."""
    value = 0
    shift = 0
    max_bytes = (bits + 6) // 7
    end = len(buf)
    for _ in range(max_bytes):
        if pos >= end:
            raise Incomplete
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                value -= 1 << shift
            if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
                raise DecodeError(f"LEB128 value does not fit in s{bits}")
            return value, pos
    raise DecodeError(f"LEB128 longer than {max_bytes} bytes for a {bits}-bit integer")


def encode_uleb128(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_sleb128(value: int, out: bytearray) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7  # arithmetic shift keeps the sign
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return
        out.append(byte | 0x80)


def uleb128_bytes(value: int) -> bytes:
    out = bytearray()
    encode_uleb128(value, out)
    return bytes(out)


def write_string(value: str, out: bytearray) -> None:
    """A WIT string: its UTF-8 length (LEB128), then its bytes (UnicodeEncodeError for a lone
    surrogate). The primitive writers here are public: the fast row encoder writes with them."""
    data = value.encode("utf-8")
    if len(data) < 0x80:  # the one-byte length almost every string has
        out.append(len(data))
    else:
        encode_uleb128(len(data), out)
    out += data


def _read_length(buf: bytes, pos: int, limits: CodecLimits, what: str) -> tuple[int, int]:
    # Fast path: almost every length on the wire is a single byte.
    if pos < len(buf) and buf[pos] < 0x80:
        length, pos = buf[pos], pos + 1
    else:
        length, pos = decode_uleb128(buf, pos, 32)
    if length > limits.max_length:
        raise DecodeError(f"{what} length {length} exceeds the limit of {limits.max_length}")
    return length, pos


def _ended_inside(buf: bytes) -> DecodeError:
    return DecodeError(f"input ends inside a value after {len(buf)} bytes")


def _filled(values: list[Any], buf: bytes, pos: int) -> tuple[Any, ...]:
    """The decoded values, when they fill `buf` exactly."""
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after the last value")
    return tuple(values)


class Parts(bytearray):
    """An output buffer that keeps spliced, already-encoded chunks by reference."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[bytes] = []

    def splice(self, chunks: Sequence[bytes]) -> None:
        if self:
            self.parts.append(bytes(self))
            del self[:]
        self.parts.extend(chunk for chunk in chunks if chunk)

    def finish(self) -> list[bytes]:
        if self or not self.parts:
            self.parts.append(bytes(self))
        return self.parts


# --- compilation ---------------------------------------------------------------------------------


class Codec:
    """Compiles WIT types to encoder/decoder closures, once per type object."""

    def __init__(self, limits: CodecLimits | None = None) -> None:
        self.limits = limits or CodecLimits()
        self._decoders: dict[int, Decoder] = {}
        self._encoders: dict[int, Encoder] = {}
        self._keep_alive: list[WitType] = []  # ids stay valid while the types live

    def decoder(self, wit_type: WitType) -> Decoder:
        found = self._decoders.get(id(wit_type))
        if found is None:
            found = self._compile_decoder(wit_type)
            self._decoders[id(wit_type)] = found
            self._keep_alive.append(wit_type)
        return found

    def encoder(self, wit_type: WitType) -> Encoder:
        found = self._encoders.get(id(wit_type))
        if found is None:
            found = self._compile_encoder(wit_type)
            self._encoders[id(wit_type)] = found
            self._keep_alive.append(wit_type)
        return found

    # -- whole parameter / result tuples --

    def encode_values(self, types: Sequence[WitType], values: Sequence[Any]) -> bytes:
        """Encode a function's parameters or results: the values' encodings concatenated."""
        if len(types) != len(values):
            raise EncodeError(f"expected {len(types)} values, got {len(values)}")
        out = bytearray()
        for wit_type, value in zip(types, values, strict=True):
            self.encoder(wit_type)(value, out)
        return bytes(out)

    def decode_values(
        self, types: Sequence[WitType], buf: bytes, *, final: bool = True
    ) -> tuple[Any, ...]:
        """Decode a function's parameters or results, which must fill `buf` exactly.

        With `final=False`, bytes that end inside a value raise `Incomplete` (wait for more);
        with `final=True` they are malformed (`DecodeError`).
        """
        values = []
        pos = 0
        try:
            for wit_type in types:
                value, pos = self.decoder(wit_type)(buf, pos)
                values.append(value)
        except Incomplete:
            if final:
                raise _ended_inside(buf) from None
            raise
        return _filled(values, buf, pos)

    def decode_values_in_steps(
        self, types: Sequence[WitType], buf: bytes, *, final: bool = True, step_items: int = 500
    ) -> Generator[None, None, tuple[Any, ...]]:
        """`decode_values(types, buf, final=final)` as a generator that pauses after every
        `step_items` items of a top-level list, so a caller can let other work run between
        steps; its return value is the decoded values."""
        values: list[Any] = []
        pos = 0
        try:
            for wit_type in types:
                element = wit_type.element if isinstance(wit_type, ListType) else None
                if element is None or (isinstance(element, Primitive) and element.name == "u8"):
                    value, pos = self.decoder(wit_type)(buf, pos)
                    values.append(value)
                    continue
                count, pos = _read_length(buf, pos, self.limits, "list")
                decode_element = self.decoder(element)
                items: list[Any] = []
                for index in range(count):
                    item, pos = decode_element(buf, pos)
                    items.append(item)
                    if index % step_items == step_items - 1:
                        yield
                values.append(items)
        except Incomplete:
            if final:
                raise _ended_inside(buf) from None
            raise
        return _filled(values, buf, pos)

    def encode_values_parts(self, types: Sequence[WitType], values: Sequence[Any]) -> list[bytes]:
        """`encode_values` as a list of parts whose concatenation is the encoding: the chunks
        of an EncodedList are kept as they are, so a large result is never copied whole."""
        if len(types) != len(values):
            raise EncodeError(f"expected {len(types)} values, got {len(values)}")
        out = Parts()
        for wit_type, value in zip(types, values, strict=True):
            self.encoder(wit_type)(value, out)
        return out.finish()

    def encode_items(self, element_type: WitType, items: Sequence[Any]) -> bytes:
        """Items of a `list<element_type>`, encoded and concatenated (for an EncodedList)."""
        encode = self.encoder(element_type)
        out = bytearray()
        for item in items:
            encode(item, out)
        return bytes(out)

    def leading_list_lengths(self, types: Sequence[WitType], buf: bytes) -> list[int]:
        """The element counts of the top-level list parameters that `buf` (a prefix of the
        encoded parameters) already reaches, in order: a bound on a list's length can be
        checked before the rest of a large call has even arrived."""
        lengths: list[int] = []
        wanted = sum(1 for t in types if isinstance(t, ListType))
        pos = 0
        try:
            for wit_type in types:
                if isinstance(wit_type, ListType):
                    count, _ = _read_length(buf, pos, self.limits, "list")
                    lengths.append(count)
                    if len(lengths) == wanted:
                        break  # nothing after the last list is needed
                _, pos = self.decoder(wit_type)(buf, pos)
        except (Incomplete, DecodeError):
            pass  # the full decode reports what is malformed
        return lengths

    # -- decoders --

    def _compile_decoder(self, t: WitType) -> Decoder:
        limits = self.limits
        if isinstance(t, Primitive):
            return _primitive_decoder(t.name, limits)
        if isinstance(t, ListType):
            element = t.element
            if isinstance(element, Primitive) and element.name == "u8":
                return _bytes_decoder(limits)
            decode_element = self.decoder(element)

            def decode_list(buf: bytes, pos: int) -> tuple[Any, int]:
                count, pos = _read_length(buf, pos, limits, "list")
                items: list[Any] = []
                append = items.append
                for _ in range(count):
                    item, pos = decode_element(buf, pos)
                    append(item)
                return items, pos

            return decode_list
        if isinstance(t, TupleType):
            element_decoders = tuple(self.decoder(e) for e in t.elements)

            def decode_tuple(buf: bytes, pos: int) -> tuple[Any, int]:
                items = []
                for decode_element in element_decoders:
                    item, pos = decode_element(buf, pos)
                    items.append(item)
                return tuple(items), pos

            return decode_tuple
        if isinstance(t, RecordType):
            field_decoders = tuple((name, self.decoder(ft)) for name, ft in t.fields)

            if len(field_decoders) == 2:
                return _two_field_record_decoder(field_decoders)
            return _record_decoder(field_decoders)
        if isinstance(t, VariantType):
            # A case without payload decodes to one shared Case: a list of a million nulls
            # costs a million references, not a million objects.
            case_decoders = tuple(
                (name, Case(name) if ct is None else self.decoder(ct)) for name, ct in t.cases
            )
            case_count = len(case_decoders)
            variant_name = t.name or "variant"

            def decode_variant(buf: bytes, pos: int) -> tuple[Any, int]:
                if pos < len(buf) and buf[pos] < 0x80:
                    index = buf[pos]
                    pos += 1
                else:
                    index, pos = decode_uleb128(buf, pos, 32)
                if index >= case_count:
                    raise DecodeError(
                        f"{variant_name}: case index {index} out of range ({case_count} cases)"
                    )
                name, decode_payload = case_decoders[index]
                if isinstance(decode_payload, Case):
                    return decode_payload, pos
                payload, pos = decode_payload(buf, pos)
                return Case(name, payload), pos

            return decode_variant
        if isinstance(t, EnumType):
            names = t.names
            enum_name = t.name or "enum"

            def decode_enum(buf: bytes, pos: int) -> tuple[Any, int]:
                index, pos = _read_index(buf, pos)
                if index >= len(names):
                    raise DecodeError(f"{enum_name}: case index {index} out of range")
                return names[index], pos

            return decode_enum
        if isinstance(t, FlagsType):
            return _flags_decoder(t)
        if isinstance(t, OptionType):
            decode_payload = self.decoder(t.payload)

            def decode_option(buf: bytes, pos: int) -> tuple[Any, int]:
                tag = _read_byte(buf, pos)
                if tag == 0:
                    return None, pos + 1
                if tag == 1:
                    return decode_payload(buf, pos + 1)
                raise DecodeError(f"option discriminant {tag} is neither 0 nor 1")

            return decode_option
        if isinstance(t, ResultType):
            decode_ok = None if t.ok is None else self.decoder(t.ok)
            decode_err = None if t.err is None else self.decoder(t.err)

            def decode_result(buf: bytes, pos: int) -> tuple[Any, int]:
                tag = _read_byte(buf, pos)
                pos += 1
                if tag == 0:
                    if decode_ok is None:
                        return Ok(), pos
                    value, pos = decode_ok(buf, pos)
                    return Ok(value), pos
                if tag == 1:
                    if decode_err is None:
                        return Err(), pos
                    value, pos = decode_err(buf, pos)
                    return Err(value), pos
                raise DecodeError(f"result discriminant {tag} is neither 0 nor 1")

            return decode_result
        raise TypeError(f"not a WIT type: {t!r}")

    # -- encoders --

    def _compile_encoder(self, t: WitType) -> Encoder:
        if isinstance(t, Primitive):
            return _primitive_encoder(t.name)
        if isinstance(t, ListType):
            element = t.element
            if isinstance(element, Primitive) and element.name == "u8":
                return _encode_bytes
            encode_element = self.encoder(element)

            def encode_list(value: Any, out: bytearray) -> None:
                if not isinstance(value, list | tuple):
                    if isinstance(value, EncodedList):
                        encode_uleb128(value.count, out)
                        if isinstance(out, Parts):
                            out.splice(value.chunks)  # kept by reference: no copy
                        else:
                            for chunk in value.chunks:
                                out += chunk
                        return
                    raise EncodeError(f"list expects a list, got {type(value).__name__}")
                encode_uleb128(len(value), out)
                for item in value:
                    encode_element(item, out)

            return encode_list
        if isinstance(t, TupleType):
            element_encoders = tuple(self.encoder(e) for e in t.elements)
            arity = len(element_encoders)

            def encode_tuple(value: Any, out: bytearray) -> None:
                if not isinstance(value, tuple | list) or len(value) != arity:
                    raise EncodeError(f"tuple expects a {arity}-tuple, got {value!r:.80}")
                for encode_element, item in zip(element_encoders, value, strict=True):
                    encode_element(item, out)

            return encode_tuple
        if isinstance(t, RecordType):
            field_encoders = tuple((name, self.encoder(ft)) for name, ft in t.fields)
            record_name = t.name

            if len(field_encoders) == 2:
                return _two_field_record_encoder(field_encoders, record_name)
            return _record_encoder(field_encoders, record_name)
        if isinstance(t, VariantType):
            cases = {
                name: (uleb128_bytes(index), None if ct is None else self.encoder(ct))
                for index, (name, ct) in enumerate(t.cases)
            }
            variant_name = t.name or "variant"

            def encode_variant(value: Any, out: bytearray) -> None:
                if not isinstance(value, Case):
                    raise EncodeError(f"{variant_name} expects a Case, got {value!r:.80}")
                found = cases.get(value.tag)
                if found is None:
                    raise EncodeError(f"{variant_name} has no case {value.tag!r}")
                index_bytes, encode_payload = found
                out += index_bytes
                if encode_payload is not None:
                    encode_payload(value.value, out)
                elif value.value is not None:
                    raise EncodeError(f"{variant_name} case {value.tag!r} carries no payload")

            return encode_variant
        if isinstance(t, EnumType):
            indices = {name: index for index, name in enumerate(t.names)}
            enum_name = t.name

            def encode_enum(value: Any, out: bytearray) -> None:
                index = indices.get(value) if isinstance(value, str) else None
                if index is None:
                    raise EncodeError(f"enum {enum_name} has no case {value!r:.80}")
                encode_uleb128(index, out)

            return encode_enum
        if isinstance(t, FlagsType):
            return _flags_encoder(t)
        if isinstance(t, OptionType):
            encode_payload = self.encoder(t.payload)

            def encode_option(value: Any, out: bytearray) -> None:
                if value is None:
                    out.append(0)
                else:
                    out.append(1)
                    encode_payload(value, out)

            return encode_option
        if isinstance(t, ResultType):
            encode_ok = None if t.ok is None else self.encoder(t.ok)
            encode_err = None if t.err is None else self.encoder(t.err)

            def encode_result(value: Any, out: bytearray) -> None:
                if isinstance(value, Ok):
                    out.append(0)
                    side, encode_side = "ok", encode_ok
                elif isinstance(value, Err):
                    out.append(1)
                    side, encode_side = "err", encode_err
                else:
                    raise EncodeError(f"result expects Ok or Err, got {value!r:.80}")
                if encode_side is not None:
                    encode_side(value.value, out)
                elif value.value is not None:
                    raise EncodeError(f"this result's {side} side carries no value")

            return encode_result
        raise TypeError(f"not a WIT type: {t!r}")


def _record_encoder(field_encoders: tuple[tuple[str, Encoder], ...], record_name: str) -> Encoder:
    def encode_record(value: Any, out: bytearray) -> None:
        try:
            for name, encode_field in field_encoders:
                encode_field(value[name], out)
        except (KeyError, TypeError) as exc:
            raise EncodeError(f"record {record_name}: {value!r:.80} lacks {exc}") from None

    return encode_record


def _two_field_record_encoder(
    field_encoders: tuple[tuple[str, Encoder], ...], record_name: str
) -> Encoder:
    """Fast path for two-field records (`result-row-entry`, once per column of every row)."""
    (first_name, encode_first), (second_name, encode_second) = field_encoders

    def encode_two_field_record(value: Any, out: bytearray) -> None:
        try:
            first, second = value[first_name], value[second_name]
        except (KeyError, TypeError) as exc:
            raise EncodeError(f"record {record_name}: {value!r:.80} lacks {exc}") from None
        encode_first(first, out)
        encode_second(second, out)

    return encode_two_field_record


def _record_decoder(field_decoders: tuple[tuple[str, Decoder], ...]) -> Decoder:
    def decode_record(buf: bytes, pos: int) -> tuple[Any, int]:
        record = {}
        for name, decode_field in field_decoders:
            record[name], pos = decode_field(buf, pos)
        return record, pos

    return decode_record


def _two_field_record_decoder(field_decoders: tuple[tuple[str, Decoder], ...]) -> Decoder:
    """Fast path for two-field records (`result-row-entry`, once per column of every row)."""
    (first_name, decode_first), (second_name, decode_second) = field_decoders

    def decode_two_field_record(buf: bytes, pos: int) -> tuple[Any, int]:
        first, pos = decode_first(buf, pos)
        second, pos = decode_second(buf, pos)
        return {first_name: first, second_name: second}, pos

    return decode_two_field_record


def _read_byte(buf: bytes, pos: int) -> int:
    if pos >= len(buf):
        raise Incomplete
    return buf[pos]


def _read_index(buf: bytes, pos: int) -> tuple[int, int]:
    # Case indices are u32 LEB128; below 128 they are one byte (all of pg-value's 97 cases).
    if pos < len(buf) and buf[pos] < 0x80:
        return buf[pos], pos + 1
    return decode_uleb128(buf, pos, 32)


def _bytes_decoder(limits: CodecLimits) -> Decoder:
    def decode_bytes(buf: bytes, pos: int) -> tuple[Any, int]:
        length, pos = _read_length(buf, pos, limits, "list<u8>")
        end = pos + length
        if end > len(buf):
            raise Incomplete
        return bytes(buf[pos:end]), end

    return decode_bytes


def _encode_bytes(value: Any, out: bytearray) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise EncodeError(f"list<u8> expects bytes, got {type(value).__name__}")
    encode_uleb128(len(value), out)
    out += value


def _primitive_decoder(name: str, limits: CodecLimits) -> Decoder:
    if name == "string":
        one_byte_length = min(0x7F, limits.max_length)

        def decode_string(buf: bytes, pos: int) -> tuple[Any, int]:
            # Inlined one-byte length: strings are the most frequent value on the wire.
            if pos < len(buf) and buf[pos] <= one_byte_length:
                end = pos + 1 + buf[pos]
                pos += 1
            else:
                length, pos = _read_length(buf, pos, limits, "string")
                end = pos + length
            if end > len(buf):
                raise Incomplete
            try:
                return buf[pos:end].decode("utf-8"), end
            except UnicodeDecodeError as exc:
                raise DecodeError(f"string is not valid UTF-8: {exc.reason}") from None

        return decode_string
    if name == "bool":

        def decode_bool(buf: bytes, pos: int) -> tuple[Any, int]:
            byte = _read_byte(buf, pos)
            if byte > 1:
                raise DecodeError(f"bool byte {byte:#04x} is neither 0 nor 1")
            return byte == 1, pos + 1

        return decode_bool
    if name == "u8":

        def decode_u8(buf: bytes, pos: int) -> tuple[Any, int]:
            return _read_byte(buf, pos), pos + 1

        return decode_u8
    if name == "s8":

        def decode_s8(buf: bytes, pos: int) -> tuple[Any, int]:
            byte = _read_byte(buf, pos)
            return byte - 256 if byte > 127 else byte, pos + 1

        return decode_s8
    if name in _LEB_INTEGERS:
        bits, signed = _LEB_INTEGERS[name]
        if signed:

            def decode_signed(buf: bytes, pos: int) -> tuple[Any, int]:
                return decode_sleb128(buf, pos, bits)

            return decode_signed

        def decode_unsigned(buf: bytes, pos: int) -> tuple[Any, int]:
            if pos < len(buf) and buf[pos] < 0x80:
                return buf[pos], pos + 1
            return decode_uleb128(buf, pos, bits)

        return decode_unsigned
    if name in ("f32", "f64"):
        layout = _F32 if name == "f32" else _F64
        size = layout.size
        unpack_from = layout.unpack_from

        def decode_float(buf: bytes, pos: int) -> tuple[Any, int]:
            if pos + size > len(buf):
                raise Incomplete
            return unpack_from(buf, pos)[0], pos + size

        return decode_float
    if name == "char":
        return _decode_char
    raise TypeError(f"unknown primitive {name!r}")


def _decode_char(buf: bytes, pos: int) -> tuple[Any, int]:
    lead = _read_byte(buf, pos)
    if lead < 0x80:
        width = 1
    elif 0xC2 <= lead <= 0xDF:
        width = 2
    elif 0xE0 <= lead <= 0xEF:
        width = 3
    elif 0xF0 <= lead <= 0xF4:
        width = 4
    else:
        raise DecodeError(f"char: {lead:#04x} cannot start a UTF-8 scalar")
    end = pos + width
    if end > len(buf):
        raise Incomplete
    try:
        return buf[pos:end].decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise DecodeError(f"char is not valid UTF-8: {exc.reason}") from None


def _primitive_encoder(name: str) -> Encoder:
    if name == "string":

        def encode_string(value: Any, out: bytearray) -> None:
            if not isinstance(value, str):
                raise EncodeError(f"string expects str, got {type(value).__name__}")
            try:
                write_string(value, out)
            except UnicodeEncodeError as exc:  # lone surrogates
                raise EncodeError(f"string is not encodable as UTF-8: {exc.reason}") from None

        return encode_string
    if name == "bool":

        def encode_bool(value: Any, out: bytearray) -> None:
            if not isinstance(value, bool):
                raise EncodeError(f"bool expects bool, got {type(value).__name__}")
            out.append(1 if value else 0)

        return encode_bool
    if name in ("u8", "s8"):
        low, high = (0, 255) if name == "u8" else (-128, 127)

        def encode_byte(value: Any, out: bytearray) -> None:
            _check_int(value, low, high, name)
            out.append(value & 0xFF)

        return encode_byte
    if name in _LEB_INTEGERS:
        bits, signed = _LEB_INTEGERS[name]
        if signed:
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

            def encode_signed(value: Any, out: bytearray) -> None:
                _check_int(value, low, high, name)
                encode_sleb128(value, out)

            return encode_signed
        high = (1 << bits) - 1

        def encode_unsigned(value: Any, out: bytearray) -> None:
            if type(value) is int and 0 <= value < 0x80:  # one byte, obviously in range
                out.append(value)
                return
            _check_int(value, 0, high, name)
            encode_uleb128(value, out)

        return encode_unsigned
    if name in ("f32", "f64"):
        pack = (_F32 if name == "f32" else _F64).pack

        def encode_float(value: Any, out: bytearray) -> None:
            if not isinstance(value, float | int) or isinstance(value, bool):
                raise EncodeError(f"{name} expects float, got {type(value).__name__}")
            try:
                out += pack(value)
            except OverflowError:
                raise EncodeError(f"{value!r} does not fit in {name}") from None

        return encode_float
    if name == "char":

        def encode_char(value: Any, out: bytearray) -> None:
            if not isinstance(value, str) or len(value) != 1:
                raise EncodeError(f"char expects a one-character str, got {value!r:.20}")
            try:
                out += value.encode("utf-8")
            except UnicodeEncodeError:
                raise EncodeError("char cannot be a surrogate") from None

        return encode_char
    raise TypeError(f"unknown primitive {name!r}")


def _check_int(value: Any, low: int, high: int, name: str) -> None:
    if type(value) is not int:
        raise EncodeError(f"{name} expects int, got {type(value).__name__}")
    if not low <= value <= high:
        raise EncodeError(f"{value} does not fit in {name}")


def _flags_decoder(t: FlagsType) -> Decoder:
    names = t.names
    size = max(1, (len(names) + 7) // 8)
    valid_mask = (1 << len(names)) - 1

    def decode_flags(buf: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        if end > len(buf):
            raise Incomplete
        bits = int.from_bytes(buf[pos:end], "little")
        if bits & ~valid_mask:
            raise DecodeError(f"flags {t.name}: unknown bits set in {bits:#x}")
        return frozenset(n for i, n in enumerate(names) if bits >> i & 1), end

    return decode_flags


def _flags_encoder(t: FlagsType) -> Encoder:
    bit_of = {name: 1 << index for index, name in enumerate(t.names)}
    size = max(1, (len(t.names) + 7) // 8)

    def encode_flags(value: Any, out: bytearray) -> None:
        bits = 0
        for name in value:
            bit = bit_of.get(name)
            if bit is None:
                raise EncodeError(f"flags {t.name} has no flag {name!r}")
            bits |= bit
        out += bits.to_bytes(size, "little")

    return encode_flags
