"""The four `wasmcloud:postgres` functions against PostgreSQL, per link (no NATS in here).

Links are keyed by the calling component's id (the `source-id` of each call). Each link owns a
pool (or shares one, with `POSTGRES_SHARE_CONNECTIONS_BY_URL`) and its statement tokens. Every
function returns the WIT result value: `Ok(...)` or `Err(<error case>)`.

Running a statement (`_run`) is where the pooling guarantees live: the statement is prepared on
whichever connection serves the call (its token's pin when that one is idle), and a failure
that proves the statement never ran — PostgreSQL forgot it, its plan changed, the connection
was dead before sending — is retried, so a guest never sees `prepared statement "..." does not
exist` or any other error that only exists because of how connections are pooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import asyncpg

from provider.postgres import pooled, retry
from provider.postgres.bounded_fetch import (
    CountedRows,
    EncodedRows,
    PlainRows,
    ResultTooLarge,
    RowsEncoder,
    RowSink,
    fetch_bounded,
    fetch_in_transaction,
    run_without_rows,
)
from provider.postgres.config import ConfigError, ConnectionSettings, settings_from_config
from provider.postgres.config import shares_connections as config_shares_connections
from provider.postgres.connections import CachedStatement, StatementConnection, probe
from provider.postgres.errors import query_error, unexpected_text
from provider.postgres.metrics import Metrics
from provider.postgres.pool import AcquireTimeout, LinkPool, PoolRetired, describe
from provider.postgres.session import set_session
from provider.postgres.statements import StatementRecord, StatementRegistry
from provider.postgres.transactions import Transactions
from provider.postgres.values.convert import convert_rows, param_values
from provider.wit.values import Case, Err, Ok

log = logging.getLogger(__name__)

HEALTH_PROBE_TIMEOUT = 2.0
STALE_RETRIES = 2  # a statement PostgreSQL forgot is prepared again at most this often


# (column name, converter) pairs and column type names → that statement's rows encoder.
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


@dataclass
class _SharedPool:
    pool: LinkPool
    users: set[str] = field(default_factory=set)


@dataclass
class Link:
    source_id: str
    settings: ConnectionSettings
    pool_key: tuple[object, ...]
    pool: LinkPool  # kept here: a call that outlives a link update still has its pool


class PostgresService:
    def __init__(
        self,
        metrics: Metrics | None = None,
        registry: StatementRegistry | None = None,
        compile_rows: RowsEncoderFactory | None = None,
    ) -> None:
        # Rows encoded batch by batch as they arrive, by an encoder compiled once per statement
        # (the provider passes the wire's); without one, `query` answers plain WIT values.
        self.compile_rows = compile_rows
        self._links: dict[str, Link] = {}
        self._pools: dict[tuple[object, ...], _SharedPool] = {}
        self.refused_links: dict[str, str] = {}  # source id → why its config was refused
        self.registry = registry or StatementRegistry()
        self.metrics = metrics or Metrics()
        self.metrics.watch(self._snapshot_from_any_thread)
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transactions = Transactions(self)
        # A CLIENT span per statement and events for retries and prepares (tracing on);
        # None costs nothing.
        self.statement_tracer: StatementTracer | None = None

    # --- links --------------------------------------------------------------------------------

    @property
    def links(self) -> Mapping[str, Link]:
        return self._links

    async def put_link(self, source_id: str, values: Mapping[str, str]) -> None:
        """Create or replace the link from `source_id`; `ConfigError` refuses it."""
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                settings = settings_from_config(values)
            except ConfigError as exc:
                self.refused_links[source_id] = str(exc)
                self._drop_link(source_id)
                raise
            self.refused_links.pop(source_id, None)
            old = self._links.get(source_id)
            shared = config_shares_connections(values)
            pool_key = settings.pool_key() if shared else (source_id, *settings.pool_key())
            if old is not None and old.pool_key == pool_key:
                old.settings = settings  # e.g. a new POSTGRES_MAX_STATEMENTS; same pool
                return
            if old is not None:  # another database (or pool): its transactions end first
                await self.transactions.end_link(source_id, "link_removed")
            entry = self._pools.get(pool_key)
            if entry is None:
                entry = self._pools[pool_key] = _SharedPool(self._new_pool(source_id, settings))
            entry.users.add(source_id)
            # The new link serves from now on; calls on the old pool finish undisturbed.
            self._links[source_id] = Link(source_id, settings, pool_key, entry.pool)
            if old is not None:
                self._release_pool(old)
            log.info("link ready", extra={"source_id": source_id, "database": settings.describe()})

    async def refuse_link(self, source_id: str, reason: str) -> None:
        """A link that cannot be used (its secrets cannot be opened, ...): its calls say why."""
        await self.transactions.end_link(source_id, "link_removed")
        async with self._lock:
            self.refused_links[source_id] = reason
            self._drop_link(source_id)

    def _new_pool(self, label: str, settings: ConnectionSettings) -> LinkPool:
        metrics = self.metrics
        return LinkPool(
            settings,
            on_prepare=lambda cause: self._prepared(label, cause),
            on_evict=lambda: metrics.evictions.labels(label, "connection").inc(),
            on_wait=metrics.acquire_wait.labels(label).observe,
            on_hand_over=metrics.hand_over_reset.labels(label).observe,
            statements_per_connection=settings.statements_per_connection,
        )

    def _prepared(self, label: str, cause: str) -> None:
        self.metrics.prepares.labels(label, cause).inc()
        if self.statement_tracer is not None and cause != "first_use":
            self.statement_tracer.event("re-prepare", {"cause": cause})

    async def delete_link(self, source_id: str) -> None:
        await self.transactions.end_link(source_id, "link_removed")
        async with self._lock:
            self.refused_links.pop(source_id, None)
            self._drop_link(source_id)
        await self.registry.forget_shared(source_id)

    def _drop_link(self, source_id: str) -> None:
        self.registry.forget_link(source_id)
        link = self._links.pop(source_id, None)
        if link is not None:
            self._release_pool(link)

    def _release_pool(self, link: Link) -> None:
        """The link no longer uses its pool; retire the pool once nobody does."""
        entry = self._pools.get(link.pool_key)
        if entry is None:
            return
        entry.users.discard(link.source_id)
        if not entry.users:
            del self._pools[link.pool_key]
            task = asyncio.create_task(entry.pool.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self, timeout: float = 0.1) -> None:
        """Close every pool (used at shutdown); connections still busy are terminated."""
        await self.transactions.close()
        pools = [entry.pool for entry in self._pools.values()]
        self._pools.clear()
        self._links.clear()
        await asyncio.gather(*(pool.close(timeout) for pool in pools))

    def _link(self, source_id: str | None) -> Link | Case:
        link = self._links.get(source_id or "")
        if link is not None:
            return link
        refused = self.refused_links.get(source_id or "")
        if refused is not None:
            return Case("unexpected", f"the link from {source_id} was refused: {refused}")
        return Case("unexpected", f"no link from source {source_id!r} to this provider")

    def _pool(self, link: Link) -> LinkPool:
        return link.pool

    # --- health and metrics -------------------------------------------------------------------

    def _snapshot_from_any_thread(self) -> dict[str, dict[str, Any]]:
        """prometheus-client collects on its HTTP thread: read the state on the loop's."""
        loop = self._loop
        if loop is None or not loop.is_running() or _on_loop(loop):
            return self._snapshot()

        async def snapshot() -> dict[str, dict[str, Any]]:
            return self._snapshot()

        return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=2)

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                **self._pool(link).snapshot(),
                "statements": self.registry.count(name),
                "transactions_open": self.transactions.open_count(name),
                "transactions_oldest_seconds": self.transactions.oldest_age(name),
            }
            for name, link in list(self._links.items())
            if link.pool_key in self._pools
        }

    async def health(self) -> tuple[bool, str]:
        """Probe every link's database; (healthy, message naming what is wrong)."""
        problems = [f"link {s}: {reason}" for s, reason in sorted(self.refused_links.items())]
        probes = await asyncio.gather(*(self._probe(link) for link in self._links.values()))
        problems += [p for p in probes if p]
        summaries = [self._summary(name) for name in sorted(self._links)]
        if problems:
            return False, "; ".join(problems + summaries)
        return True, "; ".join([f"{len(self._links)} link(s) healthy", *summaries])

    def _summary(self, name: str) -> str:
        link = self._links[name]
        reprepares = self.metrics.prepares_by_cause(name)
        causes = ", ".join(f"{k} {v}" for k, v in reprepares.items() if v and k != "first_use")
        reasons = (retry.STALE, retry.PLAN_CHANGED, retry.NOT_SENT, retry.LOST)
        retries = sum(
            int(self.metrics.count(self.metrics.retries, link=name, reason=r)) for r in reasons
        )
        return (
            f"{name}: {describe(self._pool(link))}, {self.registry.count(name)} statements, "
            f"{self.transactions.open_count(name)} open transactions, "
            f"re-prepares: {causes or 'none'}, retries {retries}"
        )

    async def _probe(self, link: Link) -> str | None:
        # Its own connection, not one of the pool's: a busy pool is not an unreachable database.
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT):
                await probe(link.settings)
            return None
        except Exception as exc:
            return f"link {link.source_id}: {link.settings.describe()}: {unexpected_text(exc)}"

    # --- the four functions -------------------------------------------------------------------

    async def query(self, source_id: str | None, sql: str, params: Sequence[Any]) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            rows = await self._run(link, sql, params, rows_wanted=True)
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok(rows)

    async def query_batch(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        pool = self._pool(link)
        try:
            for attempt in range(1, pool.size + 3):
                pool, connection = await self._acquire(link)
                try:
                    try:
                        await self.observed(link, sql, self._batch(link, connection, sql), "BATCH")
                    except Exception as exc:
                        if retry.classify(exc) != retry.NOT_SENT or attempt == pool.size + 2:
                            raise
                        self.metrics.retries.labels(link.source_id, retry.NOT_SENT).inc()
                        continue  # the connection was dead before the batch was sent
                    # A batch may create types (CREATE EXTENSION hstore, CREATE TYPE): read
                    # them again. A batch that DISCARDs or DEALLOCATEs, in whatever wording,
                    # needs nothing here: `_run` prepares again on SQLSTATE 26000.
                    connection.session_dirty = True  # a batch may SET anything: reset it
                    try:
                        await connection.refresh_types()
                    except Exception:
                        connection.terminate()  # the batch ran; this connection did not survive
                    break
                finally:
                    await pool.release(connection)
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok()

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

    async def prepare(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            await self._run(link, sql, None, rows_wanted=False)  # a real server-side prepare
        except Exception as exc:
            error = self._error(link, exc)
            return Err(Case("unexpected", f"{error.tag}: {error.value}"))
        if link.source_id not in self._links:
            return Err(Case("unexpected", f"the link from {link.source_id} was deleted"))
        record, evicted = self.registry.register(link.source_id, sql, link.settings.max_statements)
        await self.registry.share(link.source_id, record)
        self.metrics.statements_registered.labels(link.source_id).inc()
        if evicted:
            self.metrics.evictions.labels(link.source_id, "link").inc(evicted)
        return Ok(record.token)

    async def exec(self, source_id: str | None, token: str, params: Sequence[Any]) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(Case("unexpected", link.value))
        record = self.registry.lookup(link.source_id, token) or await self.registry.find(
            link.source_id, token, link.settings.max_statements
        )
        if record is None:
            self.metrics.errors.labels(link.source_id, "unknown-prepared-query").inc()
            return Err(Case("unknown-prepared-query"))
        try:
            affected = await self._run(link, record.sql, params, rows_wanted=False, record=record)
        except Exception as exc:
            return Err(Case("query-error", self._error(link, exc)))
        return Ok(affected)

    # --- running one statement ----------------------------------------------------------------

    async def _run(
        self,
        link: Link,
        sql: str,
        params: Sequence[Any] | None,
        *,
        rows_wanted: bool,
        record: StatementRecord | None = None,
    ) -> Any:
        """Prepare (and unless `params` is None, run) `sql` on a connection of the link.

        Retries what provably did not run; see `retry` for the classification.
        """
        link = self._links.get(link.source_id, link)  # updated while this call awaited
        pool = self._pool(link)
        stale_retries = 0
        attempts = pool.size + 2  # enough to get past every dead connection of the pool
        prefer = record.pinned() if record is not None else None
        for attempt in range(1, attempts + 1):
            pool, connection = await self._acquire(link, prefer)
            try:
                try:
                    result = await self.run_on(link, connection, sql, params, rows_wanted)
                except Exception as exc:
                    kind = retry.classify(exc)
                    if kind in (retry.STALE, retry.PLAN_CHANGED) and stale_retries < STALE_RETRIES:
                        stale_retries += 1
                        if kind == retry.STALE:
                            connection.forget_statements("does_not_exist")
                        else:
                            connection.forget_statement(sql, "plan_changed")
                        prefer = connection  # prepare again right where it failed
                    elif kind == retry.NOT_SENT or (
                        kind == retry.LOST
                        and (record.read_only if record else retry.is_read_only(sql))
                    ):
                        prefer = None
                    elif kind == retry.LOST and params is not None:
                        raise OutcomeUnknown(
                            "the database connection was lost after the statement was sent; "
                            f"its outcome is unknown, so it was not retried ({exc})"
                        ) from exc
                    elif kind == retry.LOST:
                        prefer = None  # only a prepare was lost: nothing ran
                    else:
                        raise
                    if attempt == attempts:
                        raise
                    self.metrics.retries.labels(link.source_id, kind).inc()
                    if self.statement_tracer is not None:
                        self.statement_tracer.event("retry", {"reason": kind, "attempt": attempt})
                    continue
            finally:
                await pool.release(connection)
            if record is not None:
                record.pin_if_unpinned(connection)
            return result
        raise AssertionError("unreachable")

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
        return await self.observed(
            link, sql, self._execute(link, connection, sql, params, rows_wanted, guest_transaction)
        )

    async def observed(
        self, link: Link, sql: str, operation: Awaitable[T], name: str | None = None
    ) -> T:
        """`operation`, the running of `sql`, as one database operation: its duration in the
        metrics (db.client.operation.duration), a CLIENT span around it when tracing is on.
        `name` is its db.operation.name when not the SQL's first keyword (BATCH)."""
        tracer, settings = self.statement_tracer, link.settings
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

    async def _acquire(
        self, link: Link, prefer: StatementConnection | None = None
    ) -> tuple[LinkPool, StatementConnection]:
        """A connection of the link's pool, of its new pool if it was updated meanwhile; the
        caller gives it back with `pool.release(connection)`."""
        pool = link.pool
        for _ in range(4):
            try:
                return pool, await pool.acquire(prefer, user=link.source_id)
            except PoolRetired:
                current = self._links.get(link.source_id)
                if current is None or current.pool is pool:
                    raise
                pool, prefer = current.pool, None
        raise PoolRetired("the link's pool kept being replaced")

    def _error(self, link: Link, error: BaseException) -> Case:
        case = (
            Case("unexpected", str(error))
            if isinstance(error, OutcomeUnknown | AcquireTimeout | ResultTooLarge)
            else query_error(error)
        )
        if isinstance(error, asyncpg.exceptions.QueryCanceledError) and "statement timeout" in (
            case.value
        ):
            bound = f"POSTGRES_STATEMENT_TIMEOUT is {link.settings.statement_timeout:g} s"
            case = Case(case.tag, f"{case.value} ({bound})")
        self.metrics.errors.labels(link.source_id, case.tag).inc()
        if case.tag == "unexpected":
            log.warning("query failed", extra={"source_id": link.source_id, "error": case.value})
        return case


_SESSION_COMMANDS = frozenset({"SET", "RESET", "LISTEN", "DECLARE", "DISCARD", "DEALLOCATE"})


def _changes_session(status: str) -> bool:
    """The command tag says the statement changed session state (SET, LISTEN, ...)."""
    return status.split(" ", 1)[0] in _SESSION_COMMANDS


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def rows_affected(status: str | None, rows_returned: int) -> int:
    """The count from a command tag ('INSERT 0 3' → 3, 'SELECT 5' → 5, 'CREATE TABLE' → 0)."""
    if not status:
        return rows_returned
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
