"""Rows straight to their wRPC bytes: one encoder compiled per statement's result columns.

The general path turns every value into a WIT value (a `Case`, a dict per column) and then
encodes that: four to six objects per value, most of a query's CPU. A compiled encoder writes
each column's name bytes (computed once) and, for the common column types, the value's case
and payload directly; every other type takes the general path for that column only. Each fast
encoder is pinned to the general path by tests/unit/test_row_wire.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from provider.common.bounded_tables import remember
from provider.postgres.values.convert import ColumnConverter
from provider.postgres.values.text import offset_case
from provider.wit.codec import (
    Codec,
    encode_sleb128,
    encode_uleb128,
    uleb128_bytes,
    write_string,
)
from provider.wit.model import ListType, RecordType, VariantType, postgres_package

RawRowsEncoder = Callable[[Sequence[Any]], bytes]  # asyncpg records → concatenated row bytes
ValueWriter = Callable[[Any, bytearray], None]  # one non-NULL value: case index and payload


class TimestampTzWire:
    """A timestamptz's text, as PostgreSQL prints it in ISO style (`2026-12-02 01:02:03.45+01`),
    straight to the bytes of its `timestamp-tz` payload. The date, the `HH:MM:SS` and the
    offset are each looked up in a bounded table of texts already seen (one day's rows share a
    date, a session's rows an offset); only the fraction is parsed every time. Any other shape
    (infinity, BC, a five-digit year) returns False: the general path takes it."""

    MAX_ENTRIES = 4096  # per table; a full table is cleared, not grown

    def __init__(self) -> None:
        self._dates: dict[str, bytes] = {}
        self._times: dict[str, bytes] = {}
        self._offsets: dict[str, bytes] = {}

    def write(self, text: str, out: bytearray) -> bool:
        size = len(text)
        if size < 22 or text[10] != " ":
            return False
        date = self._dates.get(text[:10])
        if date is None:
            date = self._learn(self._dates, text[:10], _date_bytes(text[:10]))
        hms = self._times.get(text[11:19])
        if hms is None:
            hms = self._learn(self._times, text[11:19], _hms_bytes(text[11:19]))
        sign = max(text.rfind("+", 19), text.rfind("-", 19))
        offset = self._offsets.get(text[sign:]) if sign > 0 else None
        if offset is None and sign > 0:
            offset = self._learn(self._offsets, text[sign:], _offset_bytes(text[sign:]))
        if not (date and hms and offset):
            return False
        if sign == 19:
            micro = 0
        else:
            fraction = text[20:sign]
            if text[19] != "." or not 0 < len(fraction) <= 6 or not fraction.isdigit():
                return False
            micro = int(fraction) * _SCALE[len(fraction)]
        out += date
        out += hms
        if micro < 0x80:
            out.append(micro)
        else:
            encode_uleb128(micro, out)
        out += offset
        return True

    def _learn(self, table: dict[str, bytes], text: str, encoded: bytes) -> bytes:
        return remember(table, text, encoded, self.MAX_ENTRIES)  # b"": no fast form


_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _date_bytes(text: str) -> bytes:
    """`YYYY-MM-DD` → the `date` variant's `ymd` case; b"" for any other text."""
    if text[4] != "-" or text[7] != "-" or not _digits(text[:4] + text[5:7] + text[8:10]):
        return b""
    out = bytearray(b"\x02")  # date: positive-infinity, negative-infinity, ymd(tuple)
    encode_sleb128(int(text[:4]), out)
    encode_uleb128(int(text[5:7]), out)
    encode_uleb128(int(text[8:10]), out)
    return bytes(out)


def _hms_bytes(text: str) -> bytes:
    """`HH:MM:SS` → the `time` record's first three fields; b"" for any other text."""
    if text[2] != ":" or text[5] != ":" or not _digits(text[:2] + text[3:5] + text[6:8]):
        return b""
    return bytes((int(text[:2]), int(text[3:5]), int(text[6:8])))  # each < 128: one byte


def _offset_bytes(text: str) -> bytes:
    """`+HH`, `-HH:MM`, `+HH:MM:SS` → the `offset` variant; b"" for any other text."""
    body = text[1:]
    if len(body) == 2 and _digits(body):
        seconds = int(body) * 3600
    elif len(body) == 5 and body[2] == ":" and _digits(body[:2] + body[3:]):
        seconds = int(body[:2]) * 3600 + int(body[3:]) * 60
    elif len(body) == 8 and body[2] == body[5] == ":" and _digits(body[:2] + body[3:5] + body[6:]):
        seconds = int(body[:2]) * 3600 + int(body[3:5]) * 60 + int(body[6:])
    else:
        return b""
    offset = offset_case(-seconds if text[0] == "-" else seconds)  # the text layer's rule
    out = bytearray((_OFFSET_INDEX[offset.tag],))
    encode_sleb128(offset.value, out)
    return bytes(out)


# The `offset` variant's cases in WIT order (test_row_wire pins the fast path to the codec's).
_OFFSET_INDEX = {"eastern-hemisphere-secs": 0, "western-hemisphere-secs": 1}


_OTHER, _INTEGER, _STRING, _BOOL = 0, 1, 2, 3
# Column types whose values are written inline (each type's pg-value case has its name).
_INLINE_KINDS = {
    "int2": _INTEGER, "int4": _INTEGER, "int8": _INTEGER, "bool": _BOOL, "text": _STRING,
    "name": _STRING, "numeric": _STRING, "json": _STRING, "jsonb": _STRING, "xml": _STRING,
}  # fmt: skip


class RowWire:
    """Compiles row encoders for the `query` result type of our WIT."""

    def __init__(self, codec: Codec | None = None) -> None:
        self._codec = codec or Codec()
        result_type = postgres_package().function("query", "query").results[0]
        row_type = result_type.ok  # type: ignore[union-attr]
        assert isinstance(row_type, ListType) and isinstance(row_type.element, ListType)
        entry = row_type.element.element
        assert isinstance(entry, RecordType)
        self.row_type = row_type.element
        value_type = entry.fields[1][1]
        assert isinstance(value_type, VariantType)
        self._case_index = {name: uleb128_bytes(i) for i, (name, _) in enumerate(value_type.cases)}
        self._encode_value = self._codec.encoder(value_type)
        self._null = self._case_index["null"]
        self._tz = TimestampTzWire()

    def general(
        self, rows: Sequence[Any], converters: Sequence[tuple[str, ColumnConverter]]
    ) -> bytes:
        """The reference: WIT values first, then the codec (what the compiled path must equal)."""
        from provider.postgres.values.convert import convert_rows

        return self._codec.encode_items(self.row_type, convert_rows(rows, list(converters)))

    def compile(
        self, converters: Sequence[tuple[str, ColumnConverter]], type_names: Sequence[str]
    ) -> RawRowsEncoder:
        """The encoder of one statement's rows (asyncpg records, in column order)."""
        # Per column: its name's bytes, those followed by its case's index, how its values are
        # written (integers, strings and booleans inline in the loop below; others by `write`).
        columns: list[tuple[bytes, bytes, int, ValueWriter | None]] = []
        for (name, convert), type_name in zip(converters, type_names, strict=True):
            prefix = bytearray()
            write_string(name, prefix)
            kind = _INLINE_KINDS.get(type_name, _OTHER)
            if kind == _OTHER:
                columns.append((bytes(prefix), b"", kind, self._column_writer(type_name, convert)))
            else:
                named_case = bytes(prefix) + self._case_index[type_name]
                columns.append((bytes(prefix), named_case, kind, None))
        count = uleb128_bytes(len(columns))
        null = self._null

        def encode(rows: Sequence[Any]) -> bytes:
            out = bytearray()
            for row in rows:
                out += count
                for (prefix, named_case, kind, write), value in zip(columns, row, strict=True):
                    if value is None:
                        out += prefix
                        out += null
                    elif kind == _STRING:
                        data = value.encode()
                        out += named_case
                        if len(data) < 0x80:
                            out.append(len(data))
                        else:
                            encode_uleb128(len(data), out)
                        out += data
                    elif kind == _INTEGER:
                        out += named_case
                        if -64 <= value < 64:
                            out.append(value & 0x7F)  # a one-byte signed LEB128
                        else:
                            encode_sleb128(value, out)
                    elif kind == _BOOL:
                        out += named_case
                        out.append(1 if value else 0)
                    else:
                        out += prefix
                        write(value, out)  # type: ignore[misc]
            return bytes(out)

        return encode

    def _column_writer(self, type_name: str, convert: ColumnConverter) -> ValueWriter:
        if type_name == "timestamptz":
            return self._timestamp_tz_writer(convert)
        encode_value = self._encode_value

        def write_general(value: Any, out: bytearray) -> None:
            encode_value(convert(value), out)

        return write_general

    def _timestamp_tz_writer(self, convert: ColumnConverter) -> ValueWriter:
        case, encode_value, fast = self._case_index["timestamp-tz"], self._encode_value, self._tz

        def write_timestamp_tz(value: Any, out: bytearray) -> None:
            mark = len(out)
            out += case
            if type(value) is str and fast.write(value, out):
                return
            del out[mark:]
            encode_value(convert(value), out)

        return write_timestamp_tz
