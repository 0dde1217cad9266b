"""Runs a link's statements: a connection of its pool, the one retry policy, observed, released.

Both the autocommit functions (`service`) and the guest's transactions (`transactions`) run
every statement through here. `run` is where the pooling guarantees live: the statement is
prepared on whichever connection serves the call (its token's pin when that one is idle), and a
failure that proves the statement never ran (PostgreSQL forgot it, its plan changed, the
connection was dead before sending) is retried, so a guest never sees `prepared statement "..."
does not exist` or any other error that only exists because of how connections are pooled.
What may be retried is `retry.decide`'s answer, for all three loops here (a statement, a batch,
a transaction's BEGIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import asyncpg

from provider.postgres import pooled, retry
from provider.postgres.bounded_fetch import (
    CountedRows,
    EncodedRows,
    PlainRows,
    RowsEncoder,
    RowSink,
    fetch_bounded,
    fetch_in_transaction,
    run_without_rows,
)
from provider.postgres.config import ConnectionSettings
from provider.postgres.connections import CachedStatement, StatementConnection
from provider.postgres.metrics import Metrics
from provider.postgres.pool import OVERDUE_MARGIN, LinkPool, PoolRetired
from provider.postgres.session import pooled_begin, set_session
from provider.postgres.socket_liveness import SILENCE_BOUND
from provider.postgres.statements import StatementRecord
from provider.postgres.values.convert import convert_rows, param_values

STALE_RETRIES = 2  # a statement PostgreSQL forgot is prepared again at most this often

# (column name, converter) pairs and column type names -> that statement's rows encoder.
RowsEncoderFactory = Callable[[Sequence[Any], Sequence[str]], RowsEncoder]

T = TypeVar("T")


class StatementTracer(Protocol):
    def statement(
        self, sql: str, operation: str, database: str, host: str, port: int
    ) -> contextlib.AbstractContextManager[Any]: ...

    def event(self, name: str, attributes: Mapping[str, Any]) -> None: ...

    def transaction(
        self, isolation: str, read_only: bool, database: str, host: str, port: int
    ) -> Any: ...

    def transaction_ended(self, span: Any, outcome: str) -> None: ...


class OutcomeUnknown(Exception):
    """The connection died after a write was sent: it may or may not have happened."""


def dropped_text(
    link: Link, connection: StatementConnection, reason: str, harmless: bool, error: BaseException
) -> str | None:
    """What the guest is told when its call's connection was dropped because the server did
    not answer (our overdue sweep, or TCP noticing silence); None for any other failure."""
    if connection.overdue:
        bound = link.settings.statement_timeout + OVERDUE_MARGIN
        cause = (f"did not answer within {bound:g} s (POSTGRES_STATEMENT_TIMEOUT plus "
                 f"{OVERDUE_MARGIN:g} s)")  # fmt: skip
    elif reason == retry.SILENT:
        cause = f"stopped answering (nothing for {SILENCE_BOUND:g} s)"
    else:
        return None
    outcome = "" if harmless else "; the statement's outcome is unknown, so it was not retried"
    return f"the database server {cause}, so the connection was dropped{outcome} ({error})"


class BeginFailed(Exception):
    """A transaction's BEGIN failed (its cause is the error); nothing was begun."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class Link:
    source_id: str
    settings: ConnectionSettings
    pool_key: tuple[object, ...]
    pool: LinkPool  # kept here: a call that outlives a link update still has its pool


class StatementRunner:
    """Runs statements on links' pools; `current_link` names a link's newest version (a call
    that outlives a link update moves to the new pool)."""

    def __init__(
        self,
        metrics: Metrics,
        current_link: Callable[[str], Link | None],
        compile_rows: RowsEncoderFactory | None = None,
    ) -> None:
        self.metrics = metrics
        self._current_link = current_link
        # Rows encoded batch by batch as they arrive, by an encoder compiled once per statement
        # (the provider passes the wire's); without one, `query` answers plain WIT values.
        self.compile_rows = compile_rows
        # A CLIENT span per statement and events for retries and prepares (tracing on);
        # None costs nothing.
        self.tracer: StatementTracer | None = None

    # --- the three retrying loops ---------------------------------------------------------------

    async def run(
        self,
        link: Link,
        sql: str,
        params: Sequence[Any] | None,
        *,
        rows_wanted: bool,
        record: StatementRecord | None = None,
    ) -> Any:
        """Prepare (and unless `params` is None, run) `sql` on a connection of the link,
        retrying what provably did not run (`retry.decide`)."""
        link = self._current_link(link.source_id) or link  # updated while this call awaited
        stale_retries = 0
        attempts = link.pool.size + 2  # enough to get past every dead connection of the pool
        prefer = record.pinned() if record is not None else None
        for attempt in range(1, attempts + 1):
            pool, connection = await self.acquire(link, prefer)
            try:
                try:
                    result = await self.run_on(link, connection, sql, params, rows_wanted)
                except Exception as exc:
                    # Nothing ran when only a prepare was asked for (params None). Read only
                    # here: scanning the SQL costs every call when done up front.
                    read_only = record.read_only if record is not None else retry.is_read_only(sql)
                    decision = retry.decide(
                        exc, may_repeat=read_only or params is None,
                        stale_retries_left=stale_retries < STALE_RETRIES,
                    )  # fmt: skip
                    harmless = read_only or params is None
                    dropped = dropped_text(link, connection, decision.reason, harmless, exc)
                    if dropped is not None:
                        raise OutcomeUnknown(dropped) from exc
                    if decision.reason == retry.LOST and not decision.again:
                        raise OutcomeUnknown(
                            "the database connection was lost after the statement was sent; "
                            f"its outcome is unknown, so it was not retried ({exc})"
                        ) from exc
                    if not decision.again or attempt == attempts:
                        raise
                    if decision.same_connection:  # prepare again right where it failed
                        stale_retries += 1
                        if decision.reason == retry.STALE:
                            connection.forget_statements("does_not_exist")
                        else:
                            connection.forget_statement(sql, "plan_changed")
                        prefer = connection
                    else:
                        prefer = None
                    self._retried(link, decision.reason, attempt)
                    continue
            finally:
                await pool.release(connection)
            if record is not None:
                record.pin_if_unpinned(connection)
            return result
        raise AssertionError("unreachable")

    async def run_batch(self, link: Link, sql: str) -> None:
        """`sql` as one simple query (`query-batch`), on another connection only if the one it
        was given was dead before the batch was sent."""
        attempts = link.pool.size + 2
        for attempt in range(1, attempts + 1):
            pool, connection = await self.acquire(link)
            try:
                connection.running_since = time.monotonic()
                try:
                    await self.observed(link, sql, self._batch(link, connection, sql), "BATCH")
                except Exception as exc:
                    decision = retry.decide(exc, may_repeat=False, stale_retries_left=False)
                    dropped = dropped_text(link, connection, decision.reason, False, exc)
                    if dropped is not None:
                        raise OutcomeUnknown(dropped) from exc
                    if not decision.again or attempt == attempts:
                        raise
                    self._retried(link, decision.reason, attempt)
                    continue
                # A batch may create types (CREATE EXTENSION hstore, CREATE TYPE): read them
                # again. A batch that DISCARDs or DEALLOCATEs, in whatever wording, needs
                # nothing here: `run` prepares again on SQLSTATE 26000.
                connection.session_dirty = True  # a batch may SET anything: reset it
                try:
                    await connection.refresh_types()
                except Exception:
                    connection.terminate()  # the batch ran; this connection did not survive
                return
            finally:
                connection.running_since = 0.0
                await pool.release(connection)

    async def begin(self, link: Link, start: str) -> tuple[LinkPool, StatementConnection]:
        """A connection held for a guest's transaction, `start` (BEGIN ...) run on it, past
        connections that died idle (a restart, a killed backend); given back on any failure
        or cancellation. The caller releases it to the pool returned with it."""
        attempts = link.pool.size + 2
        for attempt in range(1, attempts + 1):
            pool, connection = await self.acquire(link)
            try:
                # Behind a pooler, with the session's settings for this transaction only.
                sent = pooled_begin(link.settings, start) if connection.behind_pooler else start
                await self.observed(link, start, connection.execute(sent))
                return pool, connection
            except Exception as exc:
                await pool.release(connection)
                # Nothing of a BEGIN that failed survives: a connection that is gone may be
                # replaced by another.
                gone = connection.is_closed() or retry.is_lost(exc)
                if not gone or attempt == attempts:
                    raise BeginFailed(exc) from exc
                self._retried(link, retry.classify(exc), attempt)
            except BaseException:  # cancelled mid-BEGIN: the session's state is unknown
                connection.terminate()
                await pool.release(connection)
                raise
        raise AssertionError("unreachable")

    def _retried(self, link: Link, reason: str, attempt: int) -> None:
        self.metrics.retries.labels(link.source_id, reason).inc()
        if self.tracer is not None:
            self.tracer.event("retry", {"reason": reason, "attempt": attempt})

    # --- one try ----------------------------------------------------------------------------------

    async def run_on(
        self,
        link: Link,
        connection: StatementConnection,
        sql: str,
        params: Sequence[Any] | None,
        rows_wanted: bool,
        *,
        guest_transaction: bool = False,
    ) -> Any:
        """One try of `sql` on `connection`: prepare (if needed), then run unless `params` is
        None; inside a CLIENT span when tracing is on. `guest_transaction`: the connection
        holds a component's open transaction (`transactions`), so none of ours is begun."""
        connection.running_since = time.monotonic()  # (see LinkPool.stop_overdue)
        try:
            return await self.observed(
                link, sql,
                self._execute(link, connection, sql, params, rows_wanted, guest_transaction),
            )  # fmt: skip
        finally:
            connection.running_since = 0.0

    async def observed(
        self, link: Link, sql: str, operation: Awaitable[T], name: str | None = None
    ) -> T:
        """`operation`, the running of `sql`, as one database operation: its duration in the
        metrics (db.client.operation.duration), a CLIENT span around it when tracing is on.
        `name` is its db.operation.name when not the SQL's first keyword (BATCH)."""
        tracer, settings = self.tracer, link.settings
        durations = self.metrics.durations
        name = name or durations.operation(sql)
        started = time.perf_counter()
        try:
            if tracer is None:
                result = await operation
            else:
                with tracer.statement(sql, name, settings.database, settings.host, settings.port):
                    result = await operation
        except BaseException as exc:
            elapsed = time.perf_counter() - started
            durations.failed(link.source_id, settings.database, name, elapsed, exc)
            raise
        durations.succeeded(link.source_id, settings.database, name, time.perf_counter() - started)
        return result

    async def _execute(
        self,
        link: Link,
        connection: StatementConnection,
        sql: str,
        params: Sequence[Any] | None,
        rows_wanted: bool,
        guest_transaction: bool,
    ) -> Any:
        """Rows (for `query`) or the rows affected (for `exec`); results within the bound."""
        if not connection.behind_pooler:
            cached = await connection.cached_statement(sql)  # no side effects
            return await self._run_statement(
                link, connection, cached, params, rows_wanted, guest_transaction
            )
        if guest_transaction:  # the guest's own transaction keeps its server connection
            cached = await connection.fresh_statement(sql)
            return await self._run_statement(link, connection, cached, params, rows_wanted, True)
        if params is not None and pooled.runs_alone(sql) and not pooled.may_run_in_block(sql):
            return await self._run_alone(link, connection, sql, params, rows_wanted)
        try:
            async with pooled.call_transaction(connection, link.settings):
                cached = await connection.fresh_statement(sql)
                return await self._run_statement(
                    link, connection, cached, params, rows_wanted, True
                )
        except asyncpg.exceptions.InvalidTransactionTerminationError:
            if params is None or not pooled.may_run_in_block(sql):
                raise
        # A procedure that COMMITs cannot run in our transaction (2D000, rolled back: nothing
        # of it happened); it runs alone, without the session's settings.
        return await self._run_alone(link, connection, sql, params, rows_wanted)

    async def _run_alone(
        self,
        link: Link,
        connection: StatementConnection,
        sql: str,
        params: Sequence[Any],
        rows_wanted: bool,
    ) -> Any:
        """Behind a pooler, a statement that cannot run in a transaction block (`pooled`):
        bounded by the client's statement timeout, which cancels it on the server."""

        async def run() -> Any:
            cached = await connection.fresh_statement(sql)
            return await self._run_statement(link, connection, cached, params, rows_wanted, False)

        return await self._bounded_by_client(link, sql, run())

    async def _bounded_by_client(self, link: Link, sql: str, operation: Awaitable[T]) -> T:
        """`operation` within POSTGRES_STATEMENT_TIMEOUT, cancelled on the server past it (asyncpg
        sends a cancel request, which a pooler forwards). A statement that may write and was
        stopped this way may have committed first: its outcome is unknown."""
        try:
            async with asyncio.timeout(link.settings.statement_timeout or None) as bound:
                return await operation
        except TimeoutError as exc:
            if not bound.expired():
                raise
            if pooled.harmless_to_repeat(sql):
                raise pooled.statement_timeout_error() from exc
            raise OutcomeUnknown(
                f"the statement ran past POSTGRES_STATEMENT_TIMEOUT "
                f"({link.settings.statement_timeout:g} s) and was cancelled; it may have "
                "committed first, so its outcome is unknown"
            ) from exc

    async def _run_statement(
        self,
        link: Link,
        connection: StatementConnection,
        cached: CachedStatement,
        params: Sequence[Any] | None,
        rows_wanted: bool,
        in_open_transaction: bool,
    ) -> Any:
        """Run a prepared statement (unless `params` is None) into rows or a count."""
        if params is None:
            return None
        args = param_values(params, cached.parameter_types)
        if not cached.converters:  # no rows: the command tag is the whole answer
            status, rows = await run_without_rows(cached.statement, args), []
        else:
            sink = self._row_sink(cached, rows_wanted)
            bound = link.settings.max_result_bytes
            if in_open_transaction:  # the portal needs no BEGIN/COMMIT of ours
                status = await fetch_in_transaction(
                    connection, cached.statement, args, sink, bound=bound
                )
            else:
                status = await fetch_bounded(
                    connection, cached.statement, args, sink, bound=bound,
                    in_transaction=cached.in_transaction, single_trip=cached.single_trip,
                )  # fmt: skip
            rows = sink.result()
        if cached.touches_session or _changes_session(status):
            connection.session_dirty = True
        return rows if rows_wanted else rows_affected(status, 0)

    def _row_sink(self, cached: CachedStatement, rows_wanted: bool) -> RowSink:
        converters = cached.converters
        if not rows_wanted:
            return CountedRows([name for name, _ in converters])  # `exec`: counted by the tag
        if self.compile_rows is not None:
            if cached.rows_encoder is None:
                cached.rows_encoder = self.compile_rows(converters, cached.column_types)
            return EncodedRows(cached.rows_encoder)

        def convert(rows: Sequence[Any]) -> list[Any]:
            return convert_rows(rows, converters)

        return PlainRows(convert, [name for name, _ in converters])

    async def _batch(self, link: Link, connection: StatementConnection, sql: str) -> None:
        """One simple query (one server connection, even behind a pooler, where the bound is
        the client's statement timeout: asyncpg cancels it on the server)."""
        if not connection.behind_pooler:
            await connection.execute(sql)
            return
        if not pooled.single_statement_alone(sql):
            # The session's settings first (PostgreSQL bounds each statement itself), the
            # reset last: what the batch changed is gone with it.
            batch = f"{set_session(link.settings)} {sql}"
            await connection.execute(pooled.with_session_reset(batch, connection.get_reset_query()))
            return
        await self._bounded_by_client(link, sql, connection.execute(sql))

    async def acquire(
        self, link: Link, prefer: StatementConnection | None = None
    ) -> tuple[LinkPool, StatementConnection]:
        """A connection of the link's pool, of its new pool if it was updated meanwhile; the
        caller gives it back with `pool.release(connection)`."""
        pool = link.pool
        for _ in range(4):
            try:
                return pool, await pool.acquire(prefer, user=link.source_id)
            except PoolRetired:
                current = self._current_link(link.source_id)
                if current is None or current.pool is pool:
                    raise
                pool, prefer = current.pool, None
        raise PoolRetired("the link's pool kept being replaced")


_SESSION_COMMANDS = frozenset({"SET", "RESET", "LISTEN", "DECLARE", "DISCARD", "DEALLOCATE"})


def _changes_session(status: str) -> bool:
    """The command tag says the statement changed session state (SET, LISTEN, ...)."""
    return status.split(" ", 1)[0] in _SESSION_COMMANDS


def rows_affected(status: str | None, rows_returned: int) -> int:
    """The count from a command tag ('INSERT 0 3' → 3, 'SELECT 5' → 5, 'CREATE TABLE' → 0)."""
    if not status:
        return rows_returned
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
