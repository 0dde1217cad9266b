"""A statement's rows, fetched within the link's byte bound (`POSTGRES_MAX_RESULT_BYTES`).

Most results are small, so the first attempt is one round trip with no transaction: the
statement runs with a row limit and, when it completes within it, that is the answer. A
read-only statement with more rows than that runs again inside a transaction through a cursor
(a server-side portal), batch by batch; a writing statement that returns rows (`INSERT …
RETURNING`) runs that way from the start, so that a result over the bound rolls its changes
back instead of committing them unanswered. Batches are sized to about `BATCH_BYTES`; the
call fails with `ResultTooLarge` as soon as the running total passes the bound, which ends
the portal on the server and leaves the connection healthy.

Sizes are the rows' size on the wire: exact when the rows are encoded batch by batch
(`EncodedRows`, what the provider does), else estimated from the values asyncpg returns.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from provider.wrpc.values import EncodedList

RowEncoder = Callable[[list[Any]], bytes]  # WIT rows → their encoded, concatenated bytes

FIRST_BATCH_ROWS = 500
# Rows converted and encoded between two turns of the event loop (a few ms of work), so one
# component's large result never holds up another component's calls for long.
SLICE_ROWS = 200
BATCH_BYTES = 256 * 1024
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 16, 10_000

# Wire sizes of fixed-size values (tag byte and payload, rounded up).
_FIXED_SIZES: dict[type, int] = {
    type(None): 1,
    bool: 2,
    int: 11,
    float: 9,
    datetime.date: 12,
    datetime.time: 16,
    datetime.datetime: 30,
    datetime.timedelta: 16,
    uuid.UUID: 18,
}


class ResultTooLarge(Exception):
    """The result passed the link's POSTGRES_MAX_RESULT_BYTES; the text names the bound."""


def value_size(value: Any) -> int:
    fixed = _FIXED_SIZES.get(type(value))
    if fixed is not None:
        return fixed
    if isinstance(value, str):
        return 6 + (len(value) if value.isascii() else len(value.encode()))
    if isinstance(value, bytes | bytearray | memoryview):
        return 6 + len(value)
    if isinstance(value, decimal.Decimal):
        return 6 + len(str(value))
    if isinstance(value, list | tuple):
        return 6 + sum(value_size(item) for item in value)
    return 6 + len(str(value))  # anything else travels as its text (ranges, records, …)


def rows_size(rows: Sequence[Sequence[Any]], column_names_size: int) -> int:
    """Estimated wire size of raw rows; `column_names_size` is what the names add per row."""
    return sum(column_names_size + sum(map(value_size, row)) for row in rows)


def names_size(names: Sequence[str]) -> int:
    return sum(6 + len(name.encode()) for name in names)


class RowSink(Protocol):
    """Where fetched rows go, batch by batch; `add` returns the wire bytes a batch added."""

    def add(self, raw_rows: Sequence[Any]) -> int: ...

    def result(self) -> Any: ...


class EncodedRows:
    """Rows converted and encoded per batch (exact sizes; no Python objects kept per row,
    so a large result costs its bytes and nothing for the garbage collector to walk)."""

    def __init__(self, convert: Callable[[Sequence[Any]], list[Any]], encode: RowEncoder):
        self._convert, self._encode = convert, encode
        self._chunks: list[bytes] = []
        self._count = 0

    def add(self, raw_rows: Sequence[Any]) -> int:
        chunk = self._encode(self._convert(raw_rows))
        self._chunks.append(chunk)
        self._count += len(raw_rows)
        return len(chunk)

    def result(self) -> EncodedList:
        return EncodedList(self._count, tuple(self._chunks))


class PlainRows:
    """Rows kept as WIT values (no encoder at hand: the service used on its own)."""

    def __init__(self, convert: Callable[[Sequence[Any]], list[Any]], names: Sequence[str]):
        self._convert, self._names_size = convert, names_size(names)
        self._rows: list[Any] = []

    def add(self, raw_rows: Sequence[Any]) -> int:
        self._rows.extend(self._convert(raw_rows))
        return rows_size(raw_rows, self._names_size)

    def result(self) -> list[Any]:
        return self._rows


class CountedRows:
    """Rows only counted (an `exec`): nothing kept, nothing bounded."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, raw_rows: Sequence[Any]) -> int:
        self.count += len(raw_rows)
        return 0

    def result(self) -> int:
        return self.count


def _too_large(total: int, bound: int) -> ResultTooLarge:
    return ResultTooLarge(
        f"result exceeds {bound} bytes (POSTGRES_MAX_RESULT_BYTES; more than {total} bytes "
        "were read before the query was stopped): select fewer rows or columns, or page "
        "through them with LIMIT/OFFSET or a WHERE on a key"
    )


async def first_batch(statement: Any, args: Sequence[Any], limit: int) -> tuple[Any, str, bool]:
    """`PreparedStatement.fetch` with a row limit, keeping the "completed" flag asyncpg's
    public methods drop: (rows, command tag, whether the statement ran to its end)."""
    executor = statement._PreparedStatement__do_execute  # asyncpg 0.30-0.32 (pinned)
    data, status, completed = await executor(
        lambda protocol: protocol.bind_execute(statement._state, args, "", limit, True, None)
    )
    statement._last_status = status
    return data, (status or b"").decode(), bool(completed)


async def _add_in_slices(sink: RowSink, rows: Sequence[Any]) -> int:
    if len(rows) <= SLICE_ROWS:
        return sink.add(rows)
    size = 0
    for start in range(0, len(rows), SLICE_ROWS):
        size += sink.add(rows[start : start + SLICE_ROWS])
        await asyncio.sleep(0)
    return size


def _next_batch(rows: int, size: int) -> int:
    per_row = max(1, size // max(rows, 1))
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, BATCH_BYTES // per_row))


async def fetch_bounded(
    connection: Any,
    statement: Any,
    args: Sequence[Any],
    sink: RowSink,
    *,
    bound: int,
    read_only: bool,
) -> str | None:
    """Run `statement` (which returns rows) into `sink` within `bound` bytes; returns the
    command tag (None when a cursor ran it)."""
    if read_only:
        rows, status, completed = await first_batch(statement, args, FIRST_BATCH_ROWS)
        if completed:
            total = await _add_in_slices(sink, rows)
            if total > bound:
                raise _too_large(total, bound)
            return status
        del rows  # more than a batch: run it again, through a cursor
    total = 0
    batch = MIN_BATCH_ROWS * 4
    async with connection.transaction():  # ROLLBACK on any exception: nothing half-done
        cursor = await statement.cursor(*args)
        while True:
            rows = await cursor.fetch(batch)
            size = await _add_in_slices(sink, rows)
            total += size
            if total > bound:
                raise _too_large(total, bound)
            if len(rows) < batch:
                break
            # Only counted (no size): large batches, fewer round trips.
            batch = _next_batch(len(rows), size) if size else MAX_BATCH_ROWS
    return None
