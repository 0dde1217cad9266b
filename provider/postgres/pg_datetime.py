"""date / timestamp / timestamptz codecs over asyncpg's binary `tuple` format, as PG text.

asyncpg's default codecs turn these types into Python `date`/`datetime`, which cannot hold BC
years, years past 9999 or the infinities; a text-format codec would be lossless but range types
(`daterange`, `tsrange`, `tstzrange`) refuse elements with text codecs. So these three travel in
binary (days or microseconds since 2000-01-01) and our codec turns them into exactly the text
PostgreSQL prints with `DateStyle=ISO`, which `pg_text` then parses like every other text type.

timestamptz is UTC on the wire; like PostgreSQL's own output it is shown in the session's
`TimeZone` (looked up with zoneinfo when that is an IANA name, UTC otherwise).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provider.postgres import pg_text
from provider.wrpc.values import Case

DATE_INFINITY = 2**31 - 1
DATE_NEGATIVE_INFINITY = -(2**31)
TIMESTAMP_INFINITY = 2**63 - 1
TIMESTAMP_NEGATIVE_INFINITY = -(2**63)
MICROS_PER_DAY = 86_400_000_000


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 0000-03-01 - 60 (proleptic Gregorian, any year; Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era


def civil_from_days(days: int) -> tuple[int, int, int]:
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    year = year_of_era + era * 400
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year + (month <= 2), month, day


_EPOCH_2000 = days_from_civil(2000, 1, 1)


def _date_text(days_since_2000: int) -> str:
    year, month, day = civil_from_days(days_since_2000 + _EPOCH_2000)
    return pg_text.format_date(Case("ymd", (year, month, day)))


def _clock_text(micros_of_day: int) -> str:
    seconds, micro = divmod(micros_of_day, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return pg_text.format_time({"hour": hour, "min": minute, "sec": second, "micro": micro})


def decode_date(value: tuple[int]) -> str:
    (days,) = value
    if days == DATE_INFINITY:
        return "infinity"
    if days == DATE_NEGATIVE_INFINITY:
        return "-infinity"
    return _date_text(days)


def encode_date(text: str) -> tuple[int]:
    date = pg_text.parse_date(text.strip())
    if date.tag == "positive-infinity":
        return (DATE_INFINITY,)
    if date.tag == "negative-infinity":
        return (DATE_NEGATIVE_INFINITY,)
    year, month, day = date.value
    _check_date(year, month, day)
    return (days_from_civil(year, month, day) - _EPOCH_2000,)


def _check_date(year: int, month: int, day: int) -> None:
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise ValueError(f"date out of range: {year}-{month}-{day}")
    if civil_from_days(days_from_civil(year, month, day)) != (year, month, day):
        raise ValueError(f"date out of range: {year}-{month}-{day}")


def _split_micros(micros: int) -> tuple[int, int]:
    days, micros_of_day = divmod(micros, MICROS_PER_DAY)
    return days, micros_of_day


def _timestamp_text(micros: int) -> str:
    days, micros_of_day = _split_micros(micros)
    date = _date_text(days)
    era = " BC" if date.endswith(" BC") else ""
    return f"{date.removesuffix(' BC')} {_clock_text(micros_of_day)}{era}"


def decode_timestamp(value: tuple[int]) -> str:
    (micros,) = value
    if micros == TIMESTAMP_INFINITY:
        return "infinity"
    if micros == TIMESTAMP_NEGATIVE_INFINITY:
        return "-infinity"
    return _timestamp_text(micros)


def _micros_of(timestamp: dict[str, Any]) -> int:
    date = timestamp["date"]
    year, month, day = date.value
    _check_date(year, month, day)
    clock = timestamp["time"]
    if not (0 <= clock["hour"] <= 24 and 0 <= clock["min"] < 60 and 0 <= clock["sec"] < 60
            and 0 <= clock["micro"] < 1_000_000):  # fmt: skip
        raise ValueError(f"time out of range: {pg_text.format_time(clock)}")
    days = days_from_civil(year, month, day) - _EPOCH_2000
    seconds = clock["hour"] * 3600 + clock["min"] * 60 + clock["sec"]
    return days * MICROS_PER_DAY + seconds * 1_000_000 + clock["micro"]


def encode_timestamp(text: str) -> tuple[int]:
    text = text.strip()
    if text in ("infinity", "-infinity"):
        return (TIMESTAMP_INFINITY if text == "infinity" else TIMESTAMP_NEGATIVE_INFINITY,)
    if _DATE_ONLY.fullmatch(text):
        text += " 00:00:00"
    return (_micros_of(pg_text.parse_timestamp(text)),)


_DATE_ONLY = re.compile(r"\d{4,}-\d\d-\d\d( BC)?")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def session_offset_seconds(zone_name: str, micros_since_2000_utc: int) -> int:
    """The offset east of UTC that `zone_name` has at that instant (0 when unknown)."""
    zone = _zone(zone_name)
    if zone is None:
        return 0
    try:
        instant = dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
            microseconds=micros_since_2000_utc
        )
    except OverflowError:
        return 0  # outside Python's years 1-9999: shown in UTC
    offset = instant.astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def _offset_text(seconds_east: int) -> str:
    sign = "-" if seconds_east < 0 else "+"
    hours, rest = divmod(abs(seconds_east), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or seconds:
        text += f":{minutes:02d}"
    if seconds:
        text += f":{seconds:02d}"
    return text


def timestamptz_decoder(zone_name: Callable[[], str]) -> Callable[[tuple[int]], str]:
    """A decoder showing instants in the session time zone `zone_name()` names."""

    def decode_timestamptz(value: tuple[int]) -> str:
        (micros,) = value
        if micros in (TIMESTAMP_INFINITY, TIMESTAMP_NEGATIVE_INFINITY):
            return decode_timestamp(value)
        offset = session_offset_seconds(zone_name(), micros)
        text = _timestamp_text(micros + offset * 1_000_000)
        era = " BC" if text.endswith(" BC") else ""
        return f"{text.removesuffix(' BC')}{_offset_text(offset)}{era}"

    return decode_timestamptz


def encode_timestamptz(text: str) -> tuple[int]:
    text = text.strip()
    if text in ("infinity", "-infinity"):
        return encode_timestamp(text)
    try:
        parsed = pg_text.parse_timestamp_tz(text)
    except pg_text.PgTextError:
        return encode_timestamp(text)  # no offset given: UTC
    offset: Case = parsed["offset"]
    seconds_east = offset.value if offset.tag == "eastern-hemisphere-secs" else -offset.value
    return (_micros_of(parsed["timestamp"]) - seconds_east * 1_000_000,)


__all__ = [
    "civil_from_days",
    "days_from_civil",
    "decode_date",
    "decode_timestamp",
    "encode_date",
    "encode_timestamp",
    "encode_timestamptz",
    "timestamptz_decoder",
]
