"""A statement's rows, fetched within the link's byte bound (`POSTGRES_MAX_RESULT_BYTES`).

Most results are small, so the first attempt is one round trip with no transaction: the
statement runs with a row limit and, when it completes within it, that is the answer. A
read-only statement with more rows than that runs again inside a transaction through a cursor
(a server-side portal), batch by batch; a writing statement that returns rows (`INSERT …
RETURNING`) runs that way from the start, so that a result over the bound rolls its changes
back instead of committing them unanswered. Batches are sized to about `BATCH_BYTES`; the
call fails with `ResultTooLarge` as soon as the running total passes the bound, which ends
the portal on the server and leaves the connection healthy.

Sizes are the rows' size on the wire in the component-model encoding, estimated from the
values asyncpg returns (exact for text and bytes, which dominate any large result).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FIRST_BATCH_ROWS = 500
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


@dataclass
class Fetched:
    rows: list[Any]  # converted rows (empty when not kept)
    status: str | None  # the command tag; None when a cursor ran it
    row_count: int


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


def _next_batch(rows: int, size: int) -> int:
    per_row = max(1, size // max(rows, 1))
    return max(MIN_BATCH_ROWS, min(MAX_BATCH_ROWS, BATCH_BYTES // per_row))


async def fetch_bounded(
    connection: Any,
    statement: Any,
    args: Sequence[Any],
    *,
    bound: int,
    read_only: bool,
    keep_rows: bool,
    convert: Callable[[Sequence[Any]], list[Any]],
    column_names: Sequence[str],
) -> Fetched:
    """Run `statement` (which returns rows) and fetch them within `bound` bytes.

    Without `keep_rows` (an `exec`), rows are only counted and nothing is bounded.
    """
    per_row_names = names_size(column_names)
    if read_only:
        rows, status, completed = await first_batch(statement, args, FIRST_BATCH_ROWS)
        if completed:
            if keep_rows:
                total = rows_size(rows, per_row_names)
                if total > bound:
                    raise _too_large(total, bound)
                return Fetched(convert(rows), status, len(rows))
            return Fetched([], status, len(rows))
        del rows  # more than a batch: run it again, through a cursor
    return await _through_cursor(
        connection, statement, args, bound, keep_rows, convert, per_row_names
    )


async def _through_cursor(
    connection: Any,
    statement: Any,
    args: Sequence[Any],
    bound: int,
    keep_rows: bool,
    convert: Callable[[Sequence[Any]], list[Any]],
    per_row_names: int,
) -> Fetched:
    kept: list[Any] = []
    count = total = 0
    batch = MIN_BATCH_ROWS * 4
    async with connection.transaction():  # ROLLBACK on any exception: nothing half-done
        cursor = await statement.cursor(*args)
        while True:
            rows = await cursor.fetch(batch)
            count += len(rows)
            size = rows_size(rows, per_row_names)
            if keep_rows:
                total += size
                if total > bound:
                    raise _too_large(total, bound)
                kept.extend(convert(rows))
            if len(rows) < batch:
                break
            batch = _next_batch(len(rows), size)
    return Fetched(kept, None, count)
