"""Rows straight to their wRPC bytes: one encoder compiled per statement's result columns.

The general path turns every value into a WIT value (a `Case`, a dict per column) and then
encodes that: four to six objects per value, most of a query's CPU. A compiled encoder writes
each column's name bytes (computed once) and, for the common column types, the value's case
and payload directly; every other type takes the general path for that column only. Each fast
encoder is pinned to the general path by tests/test_row_wire.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from provider.postgres.pg_values import ColumnConverter
from provider.wrpc.codec import Codec, encode_sleb128, encode_uleb128
from provider.wrpc.wit_model import ListType, RecordType, VariantType, postgres_package

RawRowsEncoder = Callable[[Sequence[Any]], bytes]  # asyncpg records → concatenated row bytes
ValueWriter = Callable[[Any, bytearray], None]  # one non-NULL value: case index and payload


def _uleb(value: int) -> bytes:
    out = bytearray()
    encode_uleb128(value, out)
    return bytes(out)


def _write_integer(value: int, out: bytearray) -> None:
    encode_sleb128(value, out)


def _write_string(value: str, out: bytearray) -> None:
    data = value.encode("utf-8")
    if len(data) < 0x80:
        out.append(len(data))
    else:
        encode_uleb128(len(data), out)
    out += data


def _write_bool(value: bool, out: bytearray) -> None:
    out.append(1 if value else 0)


def parse_timestamp_tz_fast(text: str) -> tuple[int, int, int, int, int, int, int, int] | None:
    """(year, month, day, hour, minute, second, microsecond, seconds east of UTC) of a
    timestamptz as PostgreSQL prints it in ISO style with a four-digit year AD
    (`2026-12-02 01:02:03.45+01`, `...-03:30`, `...+05:53:28`); None for any other shape
    (infinity, BC, five-digit years), which the general parser handles."""
    size = len(text)
    if size < 22 or text[4] != "-" or text[7] != "-" or text[10] != " " or text[13] != ":":
        return None
    if text[16] != ":" or not (text[:4] + text[5:7] + text[8:10]).isdigit():
        return None
    if not (text[11:13] + text[14:16] + text[17:19]).isdigit():
        return None
    position, micro = 19, 0
    if text[19] == ".":
        end = 20
        while end < size and text[end].isdigit():
            end += 1
        if end == 20 or end > 26:
            return None
        micro = int(text[20:end].ljust(6, "0"))
        position = end
    sign, offset = text[position : position + 1], text[position + 1 :]
    if sign not in ("+", "-") or not offset[:2].isdigit():
        return None
    if len(offset) == 2:
        seconds = int(offset) * 3600
    elif len(offset) == 5 and offset[2] == ":" and offset[3:].isdigit():
        seconds = int(offset[:2]) * 3600 + int(offset[3:]) * 60
    elif len(offset) == 8 and offset[2] == offset[5] == ":" and offset[3:5].isdigit():
        if not offset[6:].isdigit():
            return None
        seconds = int(offset[:2]) * 3600 + int(offset[3:5]) * 60 + int(offset[6:])
    else:
        return None
    return (int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
            int(text[17:19]), micro, -seconds if sign == "-" else seconds)  # fmt: skip


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
        self._case_index = {name: _uleb(i) for i, (name, _) in enumerate(value_type.cases)}
        self._encode_value = self._codec.encoder(value_type)
        self._null = self._case_index["null"]
        self._date_ymd = _uleb(2)  # date: positive-infinity, negative-infinity, ymd

    def general(
        self, rows: Sequence[Any], converters: Sequence[tuple[str, ColumnConverter]]
    ) -> bytes:
        """The reference: WIT values first, then the codec (what the compiled path must equal)."""
        from provider.postgres.pg_values import convert_rows

        return self._codec.encode_items(self.row_type, convert_rows(rows, list(converters)))

    def _writer(self, type_name: str) -> tuple[bytes, ValueWriter] | None:
        """The case index and payload writer of a column type with a fast path, else None."""
        if type_name in ("int2", "int4", "int8"):
            return self._case_index[type_name], _write_integer
        if type_name in ("text", "name", "numeric", "json", "jsonb", "xml"):
            return self._case_index[type_name], _write_string
        if type_name == "bool":
            return self._case_index["bool"], _write_bool
        return None

    def compile(
        self, converters: Sequence[tuple[str, ColumnConverter]], type_names: Sequence[str]
    ) -> RawRowsEncoder:
        """The encoder of one statement's rows (asyncpg records, in column order)."""
        columns: list[tuple[bytes, ValueWriter]] = []
        for (name, convert), type_name in zip(converters, type_names, strict=True):
            prefix = bytearray()
            _write_string(name, prefix)
            columns.append((bytes(prefix), self._column_writer(type_name, convert)))
        count = _uleb(len(columns))
        null = self._null

        def encode(rows: Sequence[Any]) -> bytes:
            out = bytearray()
            for row in rows:
                out += count
                for (prefix, write), value in zip(columns, row, strict=True):
                    out += prefix
                    if value is None:
                        out += null
                    else:
                        write(value, out)
            return bytes(out)

        return encode

    def _column_writer(self, type_name: str, convert: ColumnConverter) -> ValueWriter:
        fast = self._writer(type_name)
        if fast is not None:
            case, payload = fast

            def write_fast(value: Any, out: bytearray) -> None:
                out += case
                payload(value, out)

            return write_fast
        if type_name == "timestamptz":
            return self._timestamp_tz_writer(convert)
        encode_value = self._encode_value

        def write_general(value: Any, out: bytearray) -> None:
            encode_value(convert(value), out)

        return write_general

    def _timestamp_tz_writer(self, convert: ColumnConverter) -> ValueWriter:
        case, ymd = self._case_index["timestamp-tz"], self._date_ymd
        encode_value = self._encode_value

        def write_timestamp_tz(value: Any, out: bytearray) -> None:
            parts = parse_timestamp_tz_fast(value) if isinstance(value, str) else None
            if parts is None:
                encode_value(convert(value), out)
                return
            year, month, day, hour, minute, second, micro, east = parts
            out += case
            out += ymd
            encode_sleb128(year, out)
            for field in (month, day, hour, minute, second, micro):
                encode_uleb128(field, out)
            if east > 0:  # as `pg_text.offset_case`: UTC counts as western
                out.append(0)
                encode_sleb128(east, out)
            else:
                out.append(1)
                encode_sleb128(-east, out)

        return write_timestamp_tz
