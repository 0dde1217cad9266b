"""Interactive transactions (`wasmcloud:postgres/transactions`): one reserved connection each.

`begin` takes a connection of the link's pool and holds it until `commit`, `rollback`, a timeout,
a lost connection, the link's removal or shutdown; the token it returns is unguessable, names
this replica, and is honoured only for the component that began it. Calls on one token run one
at a time, in arrival order. At most `POSTGRES_MAX_TRANSACTIONS` per link are open, so
autocommit calls always find a connection. Semantics: docs/transactions.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from provider.postgres import retry
from provider.postgres.bounded_fetch import ResultTooLarge
from provider.postgres.connections import StatementConnection
from provider.postgres.errors import describe_postgres_error, query_error, unexpected_text
from provider.postgres.metrics import Metrics
from provider.postgres.pool import AcquireTimeout, LinkPool
from provider.postgres.pooled import commit_with_reset, rollback_with_reset
from provider.postgres.runner import BeginFailed, Link, StatementRunner
from provider.postgres.statements import StatementRegistry
from provider.postgres.values.convert import ParamError
from provider.wit.values import Case, Err, Ok

log = logging.getLogger(__name__)

ISOLATION = {
    "read-committed": "READ COMMITTED",
    "repeatable-read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}
ENDED_MEMORY = 300.0  # seconds an ended token is still recognised (a late call never hangs)
MAX_ENDED = 100_000
BACKSTOP_MARGIN = 5.0  # idle_in_transaction_session_timeout: the idle timeout plus this
ROLLBACK_TIMEOUT = 5.0
SERIALIZATION_FAILURES = ("40001", "40P01")
UNKNOWN = Case("unknown-transaction")
_REPLICA_ID = re.compile(r"[0-9a-f]{12}")  # secrets.token_hex(6), as `replica` is made


@dataclass(eq=False)
class Transaction:
    token: str
    link_key: str
    link: Link
    pool: LinkPool
    connection: StatementConnection
    started: float
    idle_timeout: float
    max_duration: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    aborted: Case | None = None  # the query-error that aborted it (PostgreSQL's rule)
    timer: asyncio.TimerHandle | None = None
    last_call: float = 0.0
    span: Any = None  # its whole life, when the call that began it is traced


@dataclass(frozen=True)
class Ended:
    link_key: str
    answer: Case  # what a later call on the token gets (timed-out, or unknown-transaction)
    at: float


class Transactions:
    """The guest's transactions on links: `link` names a caller's link (or why it has none),
    `registry` its prepared statements; statements run through `runner`."""

    def __init__(
        self,
        runner: StatementRunner,
        link: Callable[[str | None], Link | Case],
        registry: StatementRegistry,
        metrics: Metrics,
        replica: str | None = None,
    ) -> None:
        self._runner, self._link, self._registry, self._metrics = runner, link, registry, metrics
        self.replica = replica or secrets.token_hex(6)
        self._open: dict[str, Transaction] = {}
        self._per_link: dict[str, int] = {}
        self._ended: OrderedDict[str, Ended] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    # --- numbers ------------------------------------------------------------------------------

    def open_count(self, link_key: str) -> int:
        return self._per_link.get(link_key, 0)

    def oldest_age(self, link_key: str) -> float:
        now = time.monotonic()
        ages = [now - t.started for t in self._open.values() if t.link_key == link_key]
        return max(ages, default=0.0)

    def owner_of(self, token: str) -> str | None:
        """The replica a token names (`tx_<replica>_<secret>`), None for a malformed one."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "tx" or _REPLICA_ID.fullmatch(parts[1]) is None:
            return None  # a token a component made up: never a subject to forward to
        return parts[1]

    # --- the five functions -------------------------------------------------------------------

    async def begin(self, link_key: str | None, options: Mapping[str, Any]) -> Ok | Err:
        link = self._link(link_key)
        if isinstance(link, Case):
            return Err(Case("unexpected", link.value))
        settings = link.settings
        isolation = ISOLATION.get(str(options.get("isolation")), "READ COMMITTED")
        if self.open_count(link.source_id) >= settings.max_transactions:
            self._metrics.transactions.labels(link.source_id, "refused_too_many").inc()
            return Err(Case("too-many-transactions", settings.max_transactions))
        self._per_link[link.source_id] = self.open_count(link.source_id) + 1  # reserved now
        backstop = round((settings.transaction_idle_timeout + BACKSTOP_MARGIN) * 1000)
        mode = " READ ONLY" if options.get("read-only") else ""
        start = (f"BEGIN ISOLATION LEVEL {isolation}{mode}; "
                 f"SET LOCAL idle_in_transaction_session_timeout = {backstop}")  # fmt: skip
        try:
            pool, connection = await self._runner.begin(link, start)
        except BeginFailed as failed:
            self._unreserve(link.source_id)
            return Err(Case("unexpected", f"cannot begin a transaction: {_text(failed.cause)}"))
        except Exception as exc:  # no connection for it
            self._unreserve(link.source_id)
            text = str(exc) if isinstance(exc, AcquireTimeout) else unexpected_text(exc)
            return Err(Case("unexpected", text))
        except BaseException:  # cancelled: the reservation goes (the connection went back)
            self._unreserve(link.source_id)
            raise
        token = f"tx_{self.replica}_{secrets.token_hex(18)}"  # 144 random bits
        now = time.monotonic()
        transaction = Transaction(token, link.source_id, link, pool, connection, now,
                                  settings.transaction_idle_timeout,
                                  settings.transaction_max_duration, last_call=now)  # fmt: skip
        self._open[token] = transaction
        self._arm(transaction)
        self._metrics.transactions.labels(link.source_id, "begun").inc()
        tracer = self._runner.tracer
        if tracer is not None:
            transaction.span = tracer.transaction(isolation, bool(options.get("read-only")),
                                                  settings.database, settings.host,
                                                  settings.port)  # fmt: skip
        return Ok(token)

    async def query(
        self, link_key: str | None, token: str, sql: str, params: Sequence[Any]
    ) -> Ok | Err:
        return await self._statement(link_key, token, sql, params, rows_wanted=True)

    async def exec(
        self, link_key: str | None, token: str, statement_token: str, params: Sequence[Any]
    ) -> Ok | Err:
        found = self._find(link_key, token)
        if isinstance(found, Err):
            return found
        record = self._registry.lookup(found.link_key, statement_token)
        if record is None:
            link = self._link(found.link_key)
            if not isinstance(link, Case):
                record = await self._registry.find(
                    found.link_key, statement_token, link.settings.max_statements
                )
        if record is None:
            return Err(Case("query-error", Case(
                "invalid-query", f"unknown prepared statement token {statement_token!r}"
            )))  # fmt: skip
        return await self._statement(link_key, token, record.sql, params, rows_wanted=False)

    async def commit(self, link_key: str | None, token: str) -> Ok | Err:
        found = self._find(link_key, token)
        if isinstance(found, Err):
            return found
        async with found.lock:
            if self._open.get(token) is not found:
                return self._ended_answer(link_key, token)
            if found.aborted is not None:
                await self._end(found, "rolled_back_after_error", UNKNOWN)
                return Err(Case("query-error", found.aborted))
            try:
                commit = found.connection.execute(_commit_sql(found.connection))
                await self._runner.observed(found.link, "COMMIT", commit)
            except Exception as exc:
                return await self._failed_commit(found, exc)
            await self._end(found, "committed", UNKNOWN, rollback=False)
            return Ok(None)

    async def rollback(self, link_key: str | None, token: str) -> Ok | Err:
        found = self._find(link_key, token)
        if isinstance(found, Err):
            ended = self._ended.get(token)
            if ended is not None and ended.link_key == (link_key or ""):
                return Ok(None)  # idempotent for the component that began it
            return found
        async with found.lock:
            if self._open.get(token) is found:
                await self._end(found, "rolled_back", UNKNOWN)
        return Ok(None)

    # --- inside -------------------------------------------------------------------------------

    async def _statement(
        self, link_key: str | None, token: str, sql: str, params: Sequence[Any], rows_wanted: bool
    ) -> Ok | Err:
        found = self._find(link_key, token)
        if isinstance(found, Err):
            return found
        async with found.lock:
            if self._open.get(token) is not found:
                return self._ended_answer(link_key, token)
            self._disarm(found)
            try:
                result = await self._run(found, sql, params, rows_wanted)
            except Exception as exc:
                return await self._failed_statement(found, exc)
            finally:
                found.last_call = time.monotonic()
                if self._open.get(token) is found:
                    self._arm(found)
            return Ok(result)

    async def _run(
        self, transaction: Transaction, sql: str, params: Sequence[Any], rows_wanted: bool
    ) -> Any:
        # The autocommit path's own statement runner (session tracking, tracing, the result
        # bound), told that the connection holds the guest's transaction.
        return await self._runner.run_on(transaction.link, transaction.connection, sql,
                                         params, rows_wanted, guest_transaction=True)  # fmt: skip

    async def _failed_statement(self, transaction: Transaction, exc: Exception) -> Err:
        sqlstate = getattr(exc, "sqlstate", "") or ""
        if sqlstate in SERIALIZATION_FAILURES:
            await self._end(transaction, "serialization_failure", UNKNOWN)
            return Err(Case("serialization-failure", _text(exc)))
        if transaction.connection.is_closed() or retry.is_lost(exc):
            transaction.connection.terminate()  # whatever is left of it: PostgreSQL rolls back
            await self._end(transaction, "lost", UNKNOWN, rollback=False)
            lost = "the database connection was lost, so PostgreSQL rolled the transaction back: "
            return Err(Case("unexpected", lost + _text(exc)))
        if isinstance(exc, ResultTooLarge):
            return Err(Case("query-error", Case("unexpected", str(exc))))  # still open
        case = query_error(exc)
        if not isinstance(exc, ParamError):  # a conversion error never reached PostgreSQL
            transaction.aborted = transaction.aborted or case
        return Err(Case("query-error", case))

    async def _failed_commit(self, transaction: Transaction, exc: Exception) -> Err:
        sqlstate = getattr(exc, "sqlstate", "") or ""
        if sqlstate in SERIALIZATION_FAILURES:
            await self._end(transaction, "serialization_failure", UNKNOWN, rollback=False)
            return Err(Case("serialization-failure", _text(exc)))
        if transaction.connection.is_closed() or retry.is_lost(exc):
            transaction.connection.terminate()
            await self._end(transaction, "commit_outcome_unknown", UNKNOWN, rollback=False)
            return Err(Case("commit-outcome-unknown", "the database connection was lost while "
                                                      f"committing: {_text(exc)}"))  # fmt: skip
        # A deferred constraint, say: PostgreSQL rolled the transaction back.
        await self._end(transaction, "rolled_back_after_error", UNKNOWN)
        return Err(Case("query-error", query_error(exc)))

    # --- lookup, timers, ending ---------------------------------------------------------------

    def _find(self, link_key: str | None, token: str) -> Transaction | Err:
        found = self._open.get(token)
        if found is not None and found.link_key == (link_key or ""):
            return found
        return self._ended_answer(link_key, token)

    def _ended_answer(self, link_key: str | None, token: str) -> Err:
        ended = self._ended.get(token)
        if ended is not None and ended.link_key == (link_key or ""):
            return Err(ended.answer)
        return Err(UNKNOWN)  # never issued to this component (or long gone): nothing to tell

    def _arm(self, transaction: Transaction) -> None:
        """The one timer of a transaction: its idle deadline or its end, whichever is first."""
        self._disarm(transaction)
        now = time.monotonic()
        idle_at = transaction.last_call + transaction.idle_timeout
        end_at = transaction.started + transaction.max_duration
        delay = max(0.0, min(idle_at, end_at) - now)
        loop = asyncio.get_running_loop()
        transaction.timer = loop.call_later(delay, self._expire, transaction)

    def _disarm(self, transaction: Transaction) -> None:
        if transaction.timer is not None:
            transaction.timer.cancel()
            transaction.timer = None

    def _expire(self, transaction: Transaction) -> None:
        if self._open.get(transaction.token) is not transaction or transaction.lock.locked():
            return  # ended meanwhile, or a call is running (it re-arms the timer when done)
        now = time.monotonic()
        if now >= transaction.started + transaction.max_duration:
            reason = (f"the transaction was open longer than {transaction.max_duration:g} s "
                      "(POSTGRES_TRANSACTION_MAX_DURATION) and was rolled back")  # fmt: skip
        elif now >= transaction.last_call + transaction.idle_timeout:
            reason = (f"the transaction was idle longer than {transaction.idle_timeout:g} s "
                      "(POSTGRES_TRANSACTION_IDLE_TIMEOUT) and was rolled back")  # fmt: skip
        else:
            self._arm(transaction)
            return
        # Ended now, not when the rollback task runs: a call arriving meanwhile is answered
        # `timed-out` instead of running on a transaction about to be rolled back.
        if not self._forget(transaction, "timed_out", Case("timed-out", reason)):
            return
        task = asyncio.create_task(self._close(transaction, rollback=True))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _end_locked(self, transaction: Transaction, outcome: str, answer: Case) -> None:
        async with transaction.lock:
            if self._open.get(transaction.token) is transaction:
                await self._end(transaction, outcome, answer)

    async def _end(
        self, transaction: Transaction, outcome: str, answer: Case, *, rollback: bool = True
    ) -> None:
        """Forget the transaction (remembering its token), roll back, give the connection back."""
        if self._forget(transaction, outcome, answer):
            await self._close(transaction, rollback=rollback)

    def _forget(self, transaction: Transaction, outcome: str, answer: Case) -> bool:
        """Take the transaction out of the open ones; False if it already was."""
        self._disarm(transaction)
        if self._open.pop(transaction.token, None) is None:
            return False
        self._unreserve(transaction.link_key)
        self._remember(transaction, answer)
        self._metrics.transactions.labels(transaction.link_key, outcome).inc()
        self._end_span(transaction, outcome)
        return True

    def _end_span(self, transaction: Transaction, outcome: str) -> None:
        span, transaction.span = transaction.span, None
        tracer = self._runner.tracer
        if span is not None and tracer is not None:
            tracer.transaction_ended(span, outcome)

    async def _close(self, transaction: Transaction, *, rollback: bool) -> None:
        """Roll back (if asked) and give the connection back, whatever happens meanwhile."""
        connection = transaction.connection
        try:
            if rollback and not connection.is_closed():
                sql = rollback_with_reset(connection) if connection.behind_pooler else "ROLLBACK"
                undo = self._runner.observed(transaction.link, "ROLLBACK", connection.execute(sql))
                await asyncio.wait_for(undo, ROLLBACK_TIMEOUT)
        except Exception:
            connection.terminate()  # PostgreSQL rolls back when the session ends
        except BaseException:
            connection.terminate()
            raise
        finally:
            await transaction.pool.release(connection)

    def _unreserve(self, link_key: str) -> None:
        count = self._per_link.get(link_key, 0) - 1
        if count > 0:
            self._per_link[link_key] = count
        else:
            self._per_link.pop(link_key, None)

    def _remember(self, transaction: Transaction, answer: Case) -> None:
        now = time.monotonic()
        self._ended[transaction.token] = Ended(transaction.link_key, answer, now)
        while self._ended:
            oldest = next(iter(self._ended.values()))
            if now - oldest.at < ENDED_MEMORY and len(self._ended) <= MAX_ENDED:
                break
            self._ended.popitem(last=False)

    async def end_link(self, link_key: str, why: str) -> None:
        """Roll back every open transaction of a link (deleted, or moved to another database)."""
        ended = [t for t in self._open.values() if t.link_key == link_key]
        await asyncio.gather(*(self._end_locked(t, why, UNKNOWN) for t in ended))

    async def close(self) -> None:
        """Shutdown: end every transaction at once (the pools terminate busy connections, and
        PostgreSQL rolls back whatever a closed session left open)."""
        for transaction in list(self._open.values()):
            self._disarm(transaction)
            self._open.pop(transaction.token, None)
            transaction.connection.terminate()
            self._remember(transaction, Case("unexpected", "the provider shut down"))
            self._end_span(transaction, "provider_shut_down")
        self._per_link.clear()


def _text(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.PostgresError):
        return describe_postgres_error(exc)
    return unexpected_text(exc)


def _commit_sql(connection: StatementConnection) -> str:
    """COMMIT; behind a pooler, after resetting the session in the same message (the server
    connection is the pooler's to hand to other clients next)."""
    return commit_with_reset(connection) if connection.behind_pooler else "COMMIT"
