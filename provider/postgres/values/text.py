"""PostgreSQL text formats of the types we exchange as text, both ways (pure functions).

The provider asks asyncpg for the text form of numbers, dates, times, time zones, network and bit
types, tsvector, hstore, ranges and the arrays of all of these (see `pg_values.TEXT_TYPES`),
because PostgreSQL's own text output is lossless where Python's types are not (BC years, years
past 9999, infinities, the session's time zone offset, numeric scale). This module turns those
texts into WIT payloads and back. Sessions run with `DateStyle=ISO, YMD` and
`IntervalStyle=postgres`, which is what the parsers expect.

Years follow chrono's proleptic Gregorian numbering, as the Rust provider does: year 0 is
1 BC, year -1 is 2 BC.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from provider.wit.values import Case

# --- floats as hashable-f64 / hashable-f32 (Rust's integer_decode) ------------------------------


@dataclass(frozen=True)
class _IeeeLayout:
    float_format: struct.Struct  # the float's bytes
    bits_format: struct.Struct  # the same bytes as an unsigned integer
    fraction_bits: int  # 52 for f64, 23 for f32
    exponent_bits: int  # 11 for f64, 8 for f32

    @property
    def sign_shift(self) -> int:
        return self.fraction_bits + self.exponent_bits

    @property
    def exponent_bias(self) -> int:  # the bias plus the fraction's width: 1075 for f64
        return (1 << (self.exponent_bits - 1)) - 1 + self.fraction_bits


F64 = _IeeeLayout(struct.Struct("<d"), struct.Struct("<Q"), 52, 11)
F32 = _IeeeLayout(struct.Struct("<f"), struct.Struct("<I"), 23, 8)


def integer_decode(value: float, layout: _IeeeLayout) -> tuple[int, int, int]:
    """(mantissa, exponent, sign) exactly as Rust's `integer_decode` for that float width."""
    bits = layout.bits_format.unpack(layout.float_format.pack(value))[0]
    sign = -1 if bits >> layout.sign_shift else 1
    biased = (bits >> layout.fraction_bits) & ((1 << layout.exponent_bits) - 1)
    fraction = bits & ((1 << layout.fraction_bits) - 1)
    mantissa = fraction << 1 if biased == 0 else fraction | (1 << layout.fraction_bits)
    return mantissa, biased - layout.exponent_bias, sign


def integer_encode(parts: tuple[int, int, int], layout: _IeeeLayout) -> float:
    """Inverse of `integer_decode`: rebuilds the IEEE bits, so NaN, ±inf, -0 and denormals
    survive. A tuple integer_decode cannot produce (e.g. (3, 0, 1) written by hand) is read as
    sign * mantissa * 2^exponent."""
    mantissa, exponent, sign = parts
    width = layout.fraction_bits
    sign_bit = 1 << layout.sign_shift if sign < 0 else 0
    biased = exponent + layout.exponent_bias
    if biased == 0 and mantissa < (1 << (width + 1)) and not mantissa & 1:
        bits = sign_bit | mantissa >> 1  # a denormal (or zero)
    elif 1 <= biased < (1 << layout.exponent_bits) and (1 << width) <= mantissa < (2 << width):
        bits = sign_bit | biased << width | (mantissa & ((1 << width) - 1))
    else:
        return _scaled(mantissa, exponent, sign)
    return float(layout.float_format.unpack(layout.bits_format.pack(bits))[0])


def hashable_f64(value: float) -> tuple[int, int, int]:
    return integer_decode(value, F64)


def hashable_f32(value: float) -> tuple[int, int, int]:
    return integer_decode(value, F32)


def float_from_hashable_f64(parts: tuple[int, int, int]) -> float:
    return integer_encode(parts, F64)


def float_from_hashable_f32(parts: tuple[int, int, int]) -> float:
    """The result is an f32 value held in a Python float."""
    return integer_encode(parts, F32)


def _scaled(mantissa: int, exponent: int, sign: int) -> float:
    try:
        magnitude = math.ldexp(float(mantissa), exponent)
    except OverflowError:
        magnitude = math.inf
    return -magnitude if sign < 0 else magnitude


# --- array literals ----------------------------------------------------------------------------


def parse_array_literal(text: str) -> list[Any]:
    """'{a,"b c",NULL,{1,2}}' → ['a', 'b c', None, ['1', '2']] (element texts, NULL as None)."""
    if text.startswith("["):  # explicit bounds, e.g. '[0:1]={1,2}'
        text = text[text.index("=") + 1 :]
    try:
        items, end = _parse_array_at(text, 0)
    except IndexError:
        raise PgTextError(f"unterminated array literal: {text!r}") from None
    if text[end:].strip():
        raise PgTextError(f"trailing text after array literal: {text!r}")
    return items


def _parse_array_at(text: str, i: int) -> tuple[list[Any], int]:
    if text[i : i + 1] != "{":
        raise PgTextError(f"array literal must start with '{{': {text!r}")
    items: list[Any] = []
    i += 1
    if text[i : i + 1] == "}":
        return items, i + 1
    while True:
        char = text[i : i + 1]
        if char == "{":
            nested, i = _parse_array_at(text, i)
            items.append(nested)
        elif char == '"':
            out: list[str] = []
            i += 1
            while text[i] != '"':
                if text[i] == "\\":
                    i += 1
                out.append(text[i])
                i += 1
            items.append("".join(out))
            i += 1
        else:
            start = i
            while text[i] not in ",}":
                i += 1
            word = text[start:i].strip()
            items.append(None if word.upper() == "NULL" else word)
        if text[i] == ",":
            i += 1
            continue
        if text[i] == "}":
            return items, i + 1
        raise PgTextError(f"malformed array literal: {text!r}")


def format_array_literal(items: list[Any]) -> str:
    """The inverse of `parse_array_literal`: every element quoted, None as NULL."""
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, list):
            parts.append(format_array_literal(item))
        else:
            escaped = str(item).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'"{escaped}"')
    return "{" + ",".join(parts) + "}"


# --- numeric --------------------------------------------------------------------------------------


def parse_decimal(text: str) -> Decimal:
    """A numeric parameter's text as a Decimal; `ValueError` when it is not a number."""
    try:
        value = Decimal(text.strip())
    except ArithmeticError:  # decimal.InvalidOperation
        raise ValueError(f"not a number: {text!r}") from None
    if value.is_snan():
        raise ValueError(f"not a PostgreSQL numeric: {text!r}")
    return value


# --- dates and times ------------------------------------------------------------------------------

_DATE = re.compile(r"(\d{4,})-(\d\d)-(\d\d)")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_OFFSET = re.compile(r"([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?")
_TIMESTAMP = re.compile(
    rf"{_DATE.pattern} {_TIME.pattern}(?P<offset>{_OFFSET.pattern})?(?P<bc> BC)?"
)  # fmt: skip

MIDNIGHT = {"hour": 0, "min": 0, "sec": 0, "micro": 0}


class PgTextError(ValueError):
    """A text did not have the shape PostgreSQL prints, or a value cannot be printed."""


def _year(digits: str, bc: bool) -> int:
    year = int(digits)
    return 1 - year if bc else year


def _year_text(year: int) -> tuple[str, str]:
    if year <= 0:
        return f"{1 - year:04d}", " BC"
    return f"{year:04d}", ""


def parse_date(text: str) -> Case:
    if text == "infinity":
        return Case("positive-infinity")
    if text == "-infinity":
        return Case("negative-infinity")
    match = _DATE.fullmatch(text.removesuffix(" BC"))
    if match is None:
        raise PgTextError(f"not an ISO date: {text!r}")
    year, month, day = match.groups()
    return Case("ymd", (_year(year, text.endswith(" BC")), int(month), int(day)))


def format_date(date: Case) -> str:
    if date.tag == "positive-infinity":
        return "infinity"
    if date.tag == "negative-infinity":
        return "-infinity"
    year, month, day = date.value
    year_digits, era = _year_text(year)
    return f"{year_digits}-{month:02d}-{day:02d}{era}"


def _time_record(match: re.Match[str], first_group: int) -> dict[str, int]:
    hour, minute, second, fraction = match.group(*range(first_group, first_group + 4))
    micro = int((fraction or "0").ljust(6, "0"))
    return {"hour": int(hour), "min": int(minute), "sec": int(second), "micro": micro}


def parse_time(text: str) -> dict[str, int]:
    match = _TIME.fullmatch(text)
    if match is None:
        raise PgTextError(f"not a time: {text!r}")
    return _time_record(match, 1)


def format_time(time: dict[str, int]) -> str:
    text = f"{time['hour']:02d}:{time['min']:02d}:{time['sec']:02d}"
    return f"{text}.{time['micro']:06d}" if time["micro"] else text


def parse_time_tz(text: str) -> dict[str, Any]:
    match = _TIME.match(text)
    if match is None or not _OFFSET.fullmatch(text[match.end() :]):
        raise PgTextError(f"not a time with time zone: {text!r}")
    return {"timesonze": text[match.end() :], "time": _time_record(match, 1)}


def format_time_tz(time_tz: dict[str, Any]) -> str:
    zone = time_tz["timesonze"]
    return f"{format_time(time_tz['time'])}{zone}"


def _offset_seconds(match: re.Match[str]) -> int:
    sign, hours, minutes, seconds = match.groups()
    total = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return -total if sign == "-" else total


def parse_timestamp(text: str) -> dict[str, Any]:
    if text in ("infinity", "-infinity"):
        return {"date": parse_date(text), "time": dict(MIDNIGHT)}
    match = _TIMESTAMP.fullmatch(text)
    if match is None or match.group("offset"):
        raise PgTextError(f"not a timestamp: {text!r}")
    date = Case(
        "ymd", (_year(match.group(1), bool(match.group("bc"))), int(match[2]), int(match[3]))
    )
    return {"date": date, "time": _time_record(match, 4)}


def format_timestamp(timestamp: dict[str, Any]) -> str:
    date: Case = timestamp["date"]
    if date.tag != "ymd":
        return format_date(date)
    date_text = format_date(date)
    era = " BC" if date_text.endswith(" BC") else ""
    return f"{date_text.removesuffix(' BC')} {format_time(timestamp['time'])}{era}"


def offset_case(seconds_east: int) -> Case:
    """UTC and zones west of it as western-hemisphere-secs, as upstream reports UTC."""
    if seconds_east > 0:
        return Case("eastern-hemisphere-secs", seconds_east)
    return Case("western-hemisphere-secs", -seconds_east)


def parse_timestamp_tz(text: str) -> dict[str, Any]:
    if text in ("infinity", "-infinity"):
        return {"timestamp": parse_timestamp(text), "offset": offset_case(0)}
    match = _TIMESTAMP.fullmatch(text)
    if match is None or not match.group("offset"):
        raise PgTextError(f"not a timestamp with time zone: {text!r}")
    offset_match = _OFFSET.fullmatch(match.group("offset"))
    assert offset_match is not None
    date = Case(
        "ymd", (_year(match.group(1), bool(match.group("bc"))), int(match[2]), int(match[3]))
    )
    return {
        "timestamp": {"date": date, "time": _time_record(match, 4)},
        "offset": offset_case(_offset_seconds(offset_match)),
    }


def format_offset(offset: Case) -> str:
    seconds = offset.value if offset.tag == "eastern-hemisphere-secs" else -offset.value
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{secs:02d}"


def format_timestamp_tz(timestamp_tz: dict[str, Any]) -> str:
    timestamp = timestamp_tz["timestamp"]
    if timestamp["date"].tag != "ymd":
        return format_date(timestamp["date"])
    text = format_timestamp(timestamp)
    era = " BC" if text.endswith(" BC") else ""
    return f"{text.removesuffix(' BC')}{format_offset(timestamp_tz['offset'])}{era}"


# --- ranges of dates (the WIT `interval` record) --------------------------------------------------

_RANGE = re.compile(r"([\[(])([^,]*),([^,]*)([\])])")


def parse_date_range(text: str) -> dict[str, Any] | None:
    """A daterange's text as the WIT `interval` record; None for `empty` (no WIT form).

    An unbounded side becomes an infinity with `inclusive = false`.
    """
    if text == "empty":
        return None
    match = _RANGE.fullmatch(text)
    if match is None:
        raise PgTextError(f"not a range: {text!r}")
    opening, lower, upper, closing = match.groups()
    return {
        "start": parse_date(lower.strip('"')) if lower else Case("negative-infinity"),
        "start-inclusive": opening == "[" and bool(lower),
        "end": parse_date(upper.strip('"')) if upper else Case("positive-infinity"),
        "end-inclusive": closing == "]" and bool(upper),
    }


def format_date_range(interval: dict[str, Any]) -> str:
    opening = "[" if interval["start-inclusive"] else "("
    closing = "]" if interval["end-inclusive"] else ")"
    return f"{opening}{format_date(interval['start'])},{format_date(interval['end'])}{closing}"


# --- geometry given as lists of points (path, polygon) --------------------------------------------

_POINT = re.compile(r"\(\s*([^(),\s]+)\s*,\s*([^(),\s]+)\s*\)")


def parse_points(text: str) -> list[tuple[float, float]]:
    """'[(0,0),(1,1)]' or '((0,0),(1,0),(0,1))' → [(0.0, 0.0), ...] (PostgreSQL prints floats
    in shortest round-trip form, so this is exact)."""
    return [(float(x), float(y)) for x, y in _POINT.findall(text)]


def float_text(value: float) -> str:
    """A float as PostgreSQL's input takes it (exact: repr is the shortest round trip)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def format_points(points: list[Any], to_float: Any, opening: str, closing: str) -> str:
    inner = ",".join(f"({float_text(to_float(x))},{float_text(to_float(y))})" for x, y in points)
    return f"{opening}{inner}{closing}"


# --- bits, MAC addresses, LSNs, money -------------------------------------------------------------


def parse_bits(text: str) -> tuple[int, bytes]:
    """'10110' → (5, b'\\xb0'): bit length and bytes packed most-significant bit first."""
    if text.strip("01"):
        raise PgTextError(f"not a bit string: {text!r}")
    length = len(text)
    padded = text.ljust((length + 7) // 8 * 8, "0")
    return length, int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""


def format_bits(length: int, data: bytes) -> str:
    if length > len(data) * 8:
        raise PgTextError(f"bit length {length} exceeds the {len(data)} bytes given")
    return "".join(f"{byte:08b}" for byte in data)[:length]


def parse_mac(text: str) -> dict[str, tuple[int, ...]]:
    return {"bytes": tuple(int(part, 16) for part in text.split(":"))}


def format_mac(mac: dict[str, tuple[int, ...]]) -> str:
    return ":".join(f"{byte:02x}" for byte in mac["bytes"])


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFF_FFFF:X}"


_MONEY_NOISE = re.compile(r"[^0-9.\-]")


def parse_money(text: str) -> str:
    """'-$1,234.56' → '-1234.56' (the C locale's money format; see README)."""
    negative = text.startswith("-") or text.startswith("(")
    digits = _MONEY_NOISE.sub("", text).lstrip("-")
    return f"-{digits}" if negative else digits


# --- tsvector -------------------------------------------------------------------------------------

_POSITION = re.compile(r"(\d+)([ABCD])?")


def parse_tsvector(text: str) -> list[dict[str, Any]]:
    """ "'a':1A,3 'b'" → lexeme records, one per position (one without position if none)."""
    lexemes: list[dict[str, Any]] = []
    i, end = 0, len(text)
    while i < end:
        if text[i] == " ":
            i += 1
            continue
        if text[i] != "'":
            raise PgTextError(f"tsvector lexeme must be quoted at {i}: {text!r}")
        i += 1
        data: list[str] = []
        while True:
            if i >= end:
                raise PgTextError(f"unterminated tsvector lexeme: {text!r}")
            char = text[i]
            if char == "\\" and i + 1 < end:
                data.append(text[i + 1])
                i += 2
            elif char == "'" and text[i + 1 : i + 2] == "'":
                data.append("'")
                i += 2
            elif char == "'":
                i += 1
                break
            else:
                data.append(char)
                i += 1
        word = "".join(data)
        if text[i : i + 1] != ":":
            lexemes.append({"position": None, "weight": None, "data": word})
            continue
        stop = text.find(" ", i)
        stop = end if stop == -1 else stop
        for position in text[i + 1 : stop].split(","):
            match = _POSITION.fullmatch(position)
            if match is None:
                raise PgTextError(f"bad tsvector position {position!r}")
            weight = match.group(2)
            lexemes.append(
                {
                    "position": int(match.group(1)),
                    "weight": None if weight in (None, "D") else weight,
                    "data": word,
                }
            )
        i = stop
    return lexemes


def format_tsvector(lexemes: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for lexeme in lexemes:
        word = lexeme["data"].replace("\\", "\\\\").replace("'", "''")
        text = f"'{word}'"
        if lexeme["position"] is not None:
            text += f":{lexeme['position']}{lexeme['weight'] or ''}"
        parts.append(text)
    return " ".join(parts)


# --- hstore ---------------------------------------------------------------------------------------


def parse_hstore(text: str) -> list[tuple[str, str | None]]:
    """'"a"=>"1", "b"=>NULL' → [("a", "1"), ("b", None)], in PostgreSQL's order."""
    pairs: list[tuple[str, str | None]] = []
    i, end = 0, len(text)

    def quoted(at: int) -> tuple[str, int]:
        if text[at : at + 1] != '"':
            raise PgTextError(f"hstore: expected a quote at {at}: {text!r}")
        out: list[str] = []
        at += 1
        while at < end:
            char = text[at]
            if char == "\\" and at + 1 < end:
                out.append(text[at + 1])
                at += 2
            elif char == '"':
                return "".join(out), at + 1
            else:
                out.append(char)
                at += 1
        raise PgTextError(f"hstore: unterminated string: {text!r}")

    while i < end:
        if text[i] in " ,":
            i += 1
            continue
        key, i = quoted(i)
        if text[i : i + 2] != "=>":
            raise PgTextError(f"hstore: expected => at {i}: {text!r}")
        i += 2
        if text[i : i + 4] == "NULL":
            pairs.append((key, None))
            i += 4
        else:
            value, i = quoted(i)
            pairs.append((key, value))
    return pairs


def format_hstore(pairs: list[tuple[str, str | None]]) -> str:
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{quote(k)}=>{'NULL' if v is None else quote(v)}" for k, v in pairs)
