"""A statement's rows, fetched within the link's byte bound (`POSTGRES_MAX_RESULT_BYTES`).

A statement that returns rows runs inside a transaction through a named portal, batch by
batch: the first batch is small (`FIRST_BATCH_ROWS`), later ones are sized from the rows seen
to about `BATCH_BYTES`. Rows are converted and encoded a slice at a time, and the call fails
with `ResultTooLarge` as soon as the running total passes the bound: the transaction is rolled
back (a writing statement's changes with it), which ends the portal on the server and leaves
the connection healthy. The statement runs exactly once whatever its size — a result is never
fetched again — so a `SELECT` whose functions write is as safe as any other statement.
`CALL` runs outside a transaction (a procedure may COMMIT) and returns one row.

Sizes are the rows' size on the wire: exact when the rows are encoded batch by batch
(`EncodedRows`, what the provider does), else estimated from the values asyncpg returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from provider.wit.values import EncodedList

RowsEncoder = Callable[[Sequence[Any]], bytes]  # asyncpg records → their encoded row bytes

FIRST_BATCH_ROWS = 32  # small: a single batch is read whole before any size is known
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

    bounded: bool  # whether the bytes count against the result bound

    def add(self, raw_rows: Sequence[Any]) -> int: ...

    def result(self) -> Any: ...


class EncodedRows:
    """Rows converted and encoded per batch (exact sizes; no Python objects kept per row,
    so a large result costs its bytes and nothing for the garbage collector to walk)."""

    bounded = True

    def __init__(self, encode: RowsEncoder):
        self._encode = encode
        self._chunks: list[bytes] = []
        self._count = 0

    def add(self, raw_rows: Sequence[Any]) -> int:
        chunk = self._encode(raw_rows)
        self._chunks.append(chunk)
        self._count += len(raw_rows)
        return len(chunk)

    def result(self) -> EncodedList:
        return EncodedList(self._count, tuple(self._chunks))


class PlainRows:
    """Rows kept as WIT values (no encoder at hand: the service used on its own)."""

    bounded = True

    def __init__(self, convert: Callable[[Sequence[Any]], list[Any]], names: Sequence[str]):
        self._convert, self._names_size = convert, names_size(names)
        self._rows: list[Any] = []

    def add(self, raw_rows: Sequence[Any]) -> int:
        self._rows.extend(self._convert(raw_rows))
        return rows_size(raw_rows, self._names_size)

    def result(self) -> list[Any]:
        return self._rows


class CountedRows:
    """Rows of an `exec`: not kept (its answer is the command tag's count), so not bounded;
    the size estimate still sizes the batches, so memory per batch stays bounded."""

    bounded = False

    def __init__(self, names: Sequence[str]) -> None:
        self._names_size = names_size(names)

    def add(self, raw_rows: Sequence[Any]) -> int:
        return rows_size(raw_rows, self._names_size)

    def result(self) -> None:
        return None


def _too_large(total: int, bound: int) -> ResultTooLarge:
    return ResultTooLarge(
        f"result exceeds {bound} bytes (POSTGRES_MAX_RESULT_BYTES; more than {total} bytes "
        "were read before the query was stopped): select fewer rows or columns, or page "
        "through them with LIMIT/OFFSET or a WHERE on a key"
    )


async def portal_fetch(
    statement: Any, args: Sequence[Any] | None, portal: str, limit: int
) -> tuple[Any, str, bool]:
    """Up to `limit` rows from a named portal — bound from `args` first when they are given,
    else continued — as asyncpg's cursors do it: (rows, command tag, whether it completed)."""
    protocol = statement._connection._protocol  # asyncpg 0.30-0.32 (pinned)
    if args is not None:
        data, status, completed = await protocol.bind_execute(
            statement._state, args, portal, limit, True, None
        )
    else:
        data, status, completed = await protocol.execute(
            statement._state, portal, limit, True, None
        )
    return data, (status or b"").decode(), bool(completed)


async def fetch_in_transaction(
    connection: Any, statement: Any, args: Sequence[Any], sink: RowSink, *, bound: int
) -> str:
    """`fetch_bounded` for a statement inside the guest's own open transaction: the same
    batches through a named portal, but no BEGIN/COMMIT of ours. A result over the bound
    closes its portal and raises `ResultTooLarge`; the transaction stays open (a statement
    that wrote did so in full, as PostgreSQL runs it whole at its first batch)."""
    portal = connection._get_unique_id("portal")
    try:
        return await _portal_batches(statement, args, portal, sink, bound)
    except ResultTooLarge:
        with contextlib.suppress(Exception):
            await connection.execute(f'CLOSE "{portal}"')
        raise


async def _portal_batches(
    statement: Any, args: Sequence[Any], portal: str, sink: RowSink, bound: int
) -> str:
    """Bind `portal` and fetch it batch by batch into `sink` (inside a transaction, which
    the caller holds); returns the command tag, with a SELECT's count of every batch."""
    rows, status, completed = await portal_fetch(statement, args, portal, FIRST_BATCH_ROWS)
    total = await _add_in_slices(sink, rows, 0, bound)
    row_count, seen_rows, seen_bytes = len(rows), len(rows), total
    while not completed:
        batch = _next_batch(seen_rows, seen_bytes)
        rows, status, completed = await portal_fetch(statement, None, portal, batch)
        before = total
        total = await _add_in_slices(sink, rows, total, bound)
        row_count, seen_rows, seen_bytes = row_count + len(rows), len(rows), total - before
    if status.startswith("SELECT "):
        status = f"SELECT {row_count}"  # a portal's SELECT tag counts its last batch only
    return status


async def run_without_rows(statement: Any, args: Sequence[Any]) -> str:
    """The fast path of a statement that returns no rows (an INSERT, an UPDATE): Bind,
    Execute, Sync on the protocol itself, without `PreparedStatement.fetch`'s wrappers
    (pinned to it by tests/integration/test_bounds.py); returns the command tag."""
    _, status, _ = await portal_fetch(statement, args, "", 0)
    return status


async def single_trip_fetch(statement: Any, args: Sequence[Any]) -> tuple[Any, str, bool]:
    """The fast path of a short read: Bind and Execute (at most one batch) on the unnamed
    portal and Sync, one round trip with no BEGIN/COMMIT; (rows, tag, whether it completed).
    An incomplete result is dropped (the Sync ends its portal) and fetched again in full."""
    return await portal_fetch(statement, args, "", FIRST_BATCH_ROWS + 1)


async def _add_in_slices(sink: RowSink, rows: Sequence[Any], total: int, bound: int) -> int:
    """Add `rows` a slice at a time (a turn of the loop between slices); the new total."""
    for start in range(0, len(rows), SLICE_ROWS):
        if start:
            await asyncio.sleep(0)
        total += sink.add(rows[start : start + SLICE_ROWS])
        if sink.bounded and total > bound:
            raise _too_large(total, bound)
    return total


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
    in_transaction: bool = True,
    single_trip: bool = False,
) -> str:
    """Run `statement` (which returns rows) into `sink` within `bound` bytes; returns the
    command tag. `single_trip` (for a read that may run twice, `retry.may_read_twice`) first
    tries one round trip without a transaction; a result longer than one batch then runs
    again inside the transaction, batch by batch."""
    if not in_transaction:
        rows = await statement.fetch(*args)
        await _add_in_slices(sink, rows, 0, bound)
        return str(statement.get_statusmsg() or "")
    if single_trip:
        rows, status, completed = await single_trip_fetch(statement, args)
        if completed:
            await _add_in_slices(sink, rows, 0, bound)
            return status
    portal = connection._get_unique_id("portal")
    await connection.execute("BEGIN")
    try:
        status = await _portal_batches(statement, args, portal, sink, bound)
        await connection.execute("COMMIT")
    except Exception:
        if not connection.is_closed() and connection.is_in_transaction():
            with contextlib.suppress(Exception):
                await connection.execute("ROLLBACK")  # a writing statement's changes too
        raise  # the original error: a connection lost mid-fetch stays what it was
    except BaseException:
        connection.terminate()  # cancelled mid-protocol: the session's state is unknown
        raise
    return status
