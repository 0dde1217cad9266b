"""A link's connections: up to `size` of them, each keeping its prepared statements.

Our own small pool rather than asyncpg's: asyncpg invalidates a PreparedStatement when its
pooled connection is released, and the point of a per-connection statement cache is to keep
statements across calls. A caller may *prefer* a connection (a statement token's pin): it gets
that connection when it is idle and open, and any other otherwise — a preference never makes a
call wait, so one hot token runs on every connection in parallel.

Connections are opened lazily, so an unreachable database fails calls (clearly) instead of
failing the link. After the pool has once connected, a failed connect is retried for a while
with backoff: that is a server restart or failover, and the calls waiting through it succeed.

Every connection counts against its server's budget (`server_budget`), shared with every other
pool on that server: a new one is opened only with a unit of it, and a call that finds none
waits for room (bounded by POSTGRES_ACQUIRE_TIMEOUT) instead of being refused by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncpg

from provider.common.slots import Slots
from provider.postgres.config import ConnectionSettings
from provider.postgres.connections import StatementConnection, connect, server_room
from provider.postgres.pooled import rollback_with_reset
from provider.postgres.server_budget import Grant, ServerBudget, room_from_settings

log = logging.getLogger(__name__)

RECONNECT_WINDOW = 15.0  # seconds a once-working database may take to come back
MIN_CONNECT_TIMEOUT = 0.5  # even a call near its deadline gets this long for one connect
# A statement still running this long past POSTGRES_STATEMENT_TIMEOUT means the server is not
# enforcing it (hung, stopped, or unreachable without TCP noticing): its connection is dropped.
OVERDUE_MARGIN = 5.0
RECONNECT_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)
# The room assumed when the server's settings cannot be read: PostgreSQL's default
# max_connections (100, 3 reserved), less the margin.
DEFAULT_ROOM = room_from_settings(100, 3)

# Connect failures that a server restart produces; anything else fails at once.
_TRANSIENT_CONNECT_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


class PoolRetired(asyncpg.exceptions.InterfaceError):  # type: ignore[misc]
    """The pool was retired (its link updated or deleted) before this call got a connection."""


class AcquireTimeout(Exception):
    """No connection of the pool came free within the link's POSTGRES_ACQUIRE_TIMEOUT."""


# The server's "too many clients": nothing was sent, the call waits for room (server_budget).
_REFUSED = asyncpg.exceptions.TooManyConnectionsError


class LinkPool:
    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        on_prepare: Callable[[str], None] | None = None,
        on_evict: Callable[[], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        on_hand_over: Callable[[float], None] | None = None,
        statements_per_connection: int | None = None,
        budget: ServerBudget | None = None,
    ) -> None:
        self.settings = settings
        self.size = settings.pool_size
        self._slots = Slots(self.size)
        self._idle: deque[StatementConnection] = deque()
        self._in_use: set[StatementConnection] = set()
        self._on_prepare = on_prepare
        self._on_evict = on_evict
        self._on_wait = on_wait
        self._on_hand_over = on_hand_over
        self._statements_per_connection = statements_per_connection
        self.waiting = 0
        self.closed = False
        self._retired = asyncio.Event()  # set with `closed`: ends a reconnect backoff early
        self.ever_connected = False
        self.held = 0  # units of the server budget: connections open or being opened
        # Pools with equal keys open interchangeable connections (see `adopt`).
        self.connection_key = settings.pool_key()
        self.budget = budget if budget is not None else ServerBudget(settings.server)
        self.budget.join(self)

    # --- numbers ------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def connections(self) -> list[StatementConnection]:
        return [*self._idle, *self._in_use]

    def snapshot(self) -> dict[str, int]:
        return {
            "pool_size": self.size,
            "pool_open": self.open_connections,
            "pool_in_use": self.in_use,
            "pool_idle": self.idle,
            "pool_waiting": self.waiting,
            "connection_statements": sum(len(c.prepared) for c in self.connections()),
        }

    # --- acquire / release --------------------------------------------------------------------

    async def acquire(
        self, prefer: StatementConnection | None = None, user: str = ""
    ) -> StatementConnection:
        """A connection for one call of link `user`; give it back with `release`. A shared
        pool (several links) hands a connection another link used last over only after a
        full reset, whatever was detected: detection by command tag and reported settings
        cannot see a change made inside a function."""
        if self.closed:
            raise PoolRetired("the link's pool was replaced")
        started = None
        if not self._slots.try_take():  # the common case takes a free slot without awaiting
            started = await self._wait_for_slot()
        try:
            connection = self._take_idle(prefer, user) or await self._open(started)
            # (Behind a pooler each call sets and resets its session in its own transaction.)
            if (
                connection.last_user not in ("", user)
                and not connection.behind_pooler
                and not await self._handed_over(connection)
            ):
                connection = await self._open(started)  # the reset failed: a fresh session
        except BaseException:
            self._slots.give()
            raise
        connection.last_user = user
        self._in_use.add(connection)
        return connection

    async def _wait_for_slot(self) -> float:
        """Wait for one of the link's `size` slots; the event loop's time the wait began."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.waiting += 1
        try:
            await self._slots.take(self.settings.acquire_timeout)
        except TimeoutError:
            raise AcquireTimeout(
                f"no database connection free within {self.settings.acquire_timeout:g} s "
                f"(POSTGRES_ACQUIRE_TIMEOUT; all {self.size} of the link's connections are busy)"
            ) from None
        finally:
            self.waiting -= 1
        if self.closed:  # retired while this call waited: its link has a new pool
            self._slots.give()
            raise PoolRetired("the link's pool was replaced")
        if self._on_wait is not None:
            self._on_wait(loop.time() - began)
        return began

    async def _open(self, started: float | None) -> StatementConnection:
        """A new connection within the server's budget, or one of ours that came free while
        this call waited for room; bounded by POSTGRES_ACQUIRE_TIMEOUT from the call's start."""
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if started is None else started) + self.settings.acquire_timeout
        while True:
            if self.closed:
                raise PoolRetired("the link's pool was replaced")
            if not self.budget.try_take(self):
                given = await self._wait_for_room(deadline)
                if isinstance(given, StatementConnection):
                    return given  # released by one of our calls while this one waited
            try:
                connection = await self._connect(deadline)
            except _REFUSED:
                self.budget.refused(self)  # not sent: wait for room like any other call
                if loop.time() >= deadline:
                    raise AcquireTimeout(self._no_room()) from None
                continue
            except BaseException:
                self.budget.give(self)
                raise
            if self.budget.room is None and not self.budget.reading:
                try:
                    await self._learn_room(connection)
                except BaseException:  # cancelled: the connection must not linger unowned
                    connection.terminate()
                    raise
            return connection

    async def _wait_for_room(self, deadline: float) -> StatementConnection | Grant:
        self.waiting += 1
        try:
            given: StatementConnection | Grant = await self.budget.wait(self, deadline)
            return given
        except TimeoutError:
            raise AcquireTimeout(self._no_room()) from None
        finally:
            self.waiting -= 1

    def _no_room(self) -> str:
        return (
            f"no database connection free within {self.settings.acquire_timeout:g} s "
            f"(POSTGRES_ACQUIRE_TIMEOUT; the server's connection budget is in use: "
            f"{self.budget.describe()}; see POSTGRES_SERVER_CONNECTIONS)"
        )

    async def release(self, connection: StatementConnection) -> None:
        """Give back a connection from `acquire` (reset first if its call changed the session)."""
        self._in_use.discard(connection)
        try:
            if connection.is_closed():
                return
            if not self.closed and not connection.needs_reset():
                self.settle(connection)
                return
            await self._give_back(connection)
        finally:
            self._slots.give()

    def settle(self, connection: StatementConnection) -> None:
        """A connection free for the next call: one of ours waiting for room gets it, or it
        closes so another pool's waiting call gets its unit (fair shares), or it waits idle."""
        budget = self.budget
        if self.closed:
            connection.terminate()  # only a hand-over abandoned after the retire gets here
            return
        if budget.waiting:
            if budget.should_yield(self):
                if not budget.pass_on(self, connection):
                    budget.close_for_room(connection)
                return
            if budget.hand_to_waiter(self, connection):
                return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def oldest_idle_since(self) -> float | None:
        return self._idle[0].idle_since if self._idle else None

    def stop_overdue(self, now: float) -> int:
        """Terminate the connections whose statement has run past the statement timeout plus
        OVERDUE_MARGIN (time.monotonic() `now`); their calls answer that the server did not
        answer in time. How many were stopped."""
        timeout = self.settings.statement_timeout
        if not timeout:  # 0: the link asked for no bound
            return 0
        stopped = 0
        for connection in list(self._in_use):
            since = connection.running_since
            if since and now - since > timeout + OVERDUE_MARGIN:
                connection.overdue = True
                connection.terminate()
                stopped += 1
        return stopped

    def take_oldest_idle(self) -> StatementConnection | None:
        """The least recently used idle connection, given up for another pool (server_budget)."""
        while self._idle:
            connection = self._idle.popleft()
            if not connection.is_closed():
                return connection
        return None

    def adopt(self, connection: StatementConnection, giver: LinkPool) -> bool:
        """Take over `giver`'s connection and its unit of the budget, when both pools open
        the same database with the same credentials and settings. Its `last_user` stays the
        giver's link, so the call that gets it resets the session first."""
        if self.closed or giver.connection_key != self.connection_key:
            return False
        connection.remove_termination_listener(giver._connection_closed)
        giver.held -= 1
        connection.add_termination_listener(self._connection_closed)
        self.held += 1
        self._adopted(connection)
        return True

    def _adopted(self, connection: StatementConnection) -> None:
        if self._statements_per_connection is not None:
            connection.max_statements = self._statements_per_connection
        connection.on_prepare = self._on_prepare
        connection.on_evict = self._on_evict

    def _take_idle(
        self, prefer: StatementConnection | None, user: str
    ) -> StatementConnection | None:
        if prefer is not None and not prefer.is_closed():
            with contextlib.suppress(ValueError):
                self._idle.remove(prefer)  # idle: it serves this call
                return prefer
        # The link's own last connection first: no hand-over reset needed (the most recent
        # one is the usual answer, taken without a scan).
        if self._idle and self._idle[-1].last_user in ("", user) and not self._idle[-1].is_closed():
            return self._idle.pop()
        for connection in reversed(self._idle):
            if connection.last_user == user and not connection.is_closed():
                self._idle.remove(connection)
                return connection
        while self._idle:
            connection = self._idle.pop()  # most recently used: its statements are warm
            if not connection.is_closed():
                return connection
        return None

    async def _connect(self, deadline: float) -> StatementConnection:
        """A new connection, tried again with backoff through a restart or failover (once the
        pool has connected before), never past `deadline`: the call's, on the loop's clock."""
        loop = asyncio.get_running_loop()
        until = min(deadline, loop.time() + RECONNECT_WINDOW)
        for attempt in range(10_000):
            timeout = max(MIN_CONNECT_TIMEOUT, until - loop.time())
            refusals_before = self.budget.refusals
            try:
                connection = await connect(self.settings, timeout)
                break
            except _TRANSIENT_CONNECT_ERRORS as exc:
                if self.closed:  # its link has a new pool, which may reach the server
                    raise PoolRetired("the link's pool was replaced") from exc
                if not self.ever_connected or loop.time() > until:
                    if isinstance(exc, TimeoutError):
                        raise TimeoutError(
                            f"no connection to {self.settings.describe()} within "
                            f"{timeout:.3g} s (the server did not answer)"
                        ) from exc
                    raise
                backoff = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                backoff = min(backoff, max(0.0, until - loop.time()))
                with contextlib.suppress(TimeoutError):  # a retire ends the wait at once
                    await asyncio.wait_for(self._retired.wait(), backoff)
                if self.closed:
                    raise PoolRetired("the link's pool was replaced") from exc
        else:  # pragma: no cover - the deadline ends the loop long before
            raise TimeoutError("no connection")
        connection.add_termination_listener(self._connection_closed)
        self.ever_connected = True
        self.budget.connected(refusals_before)
        self._adopted(connection)
        return connection

    def _connection_closed(self, _connection: object) -> None:
        self.budget.give(self)  # asyncpg calls this once, however the connection closed

    async def _learn_room(self, connection: StatementConnection) -> None:
        """The server's room for this replica, read once per server from its settings."""
        budget = self.budget
        budget.reading = True
        try:
            room = await asyncio.wait_for(server_room(connection), 5)
        except Exception as exc:
            log.warning(
                "cannot read the server's max_connections; assuming PostgreSQL's default",
                extra={"server": budget.server, "error": str(exc), "room": DEFAULT_ROOM},
            )
            room = DEFAULT_ROOM
        finally:
            budget.reading = False
        budget.learn(room)

    async def _handed_over(self, connection: StatementConnection) -> bool:
        """The full reset between two links' calls; False (connection gone) if it failed."""
        started = time.perf_counter()
        if not await _reset_session(connection):
            return False
        if self._on_hand_over is not None:
            self._on_hand_over(time.perf_counter() - started)
        return True

    async def _give_back(self, connection: StatementConnection) -> None:
        if connection.is_closed():
            return
        if self.closed:  # retired while this call ran: it is done now, close gracefully
            try:
                await asyncio.wait_for(connection.close(), 5)
            except Exception:
                connection.terminate()
            return
        # Pooled calls have no session affinity: a transaction left open, or settings a guest
        # changed (DateStyle, TimeZone, search_path through a batch, ...), must not reach the
        # next call, which may be another component's. asyncpg's reset rolls back, closes
        # cursors, unlistens, releases advisory locks and runs RESET ALL, which restores the
        # settings the connection was opened with.
        if connection.needs_reset() and not await _reset_session(connection):
            return
        self.settle(connection)

    async def close(self, timeout: float = 5.0) -> None:
        """Shutdown: close idle connections gracefully; terminate the ones still busy."""
        self._mark_closed()
        for connection in self._in_use:
            connection.terminate()
        await self._close_idle(timeout)

    async def retire(self, timeout: float = 5.0) -> None:
        """A link update or delete: take no new calls, let running ones finish, then close.

        Busy connections are closed gracefully when their call gives them back; callers
        waiting for one are told at once (PoolRetired), so they move to the link's new pool.
        """
        self._mark_closed()
        await self._close_idle(timeout)

    def _mark_closed(self) -> None:
        self.closed = True
        self._retired.set()
        self._slots.refuse_waiters(lambda: PoolRetired("the link's pool was replaced"))
        self.budget.leave(self, lambda: PoolRetired("the link's pool was replaced"))

    async def _close_idle(self, timeout: float) -> None:
        idle, self._idle = list(self._idle), deque()
        results = await asyncio.gather(
            *(asyncio.wait_for(c.close(), timeout) for c in idle), return_exceptions=True
        )
        for connection, result in zip(idle, results, strict=True):
            if isinstance(result, BaseException):
                connection.terminate()


async def _reset_session(connection: StatementConnection) -> bool:
    """Roll back and reset the session (see StatementConnection.get_reset_query); a
    connection that cannot be reset is terminated (False)."""
    try:
        if connection.behind_pooler:  # one message: after ROLLBACK the pooler may move us
            await asyncio.wait_for(connection.execute(rollback_with_reset(connection)), 5)
            return True
        if connection.is_in_transaction():
            await asyncio.wait_for(connection.execute("ROLLBACK"), 5)
        await asyncio.wait_for(connection.reset(), 5)
        connection.session_dirty = False
    except Exception:
        connection.terminate()
        return False
    except BaseException:  # cancelled mid-reset: the connection must not linger unowned
        connection.terminate()
        raise
    return True


def describe(pool: LinkPool) -> str:
    numbers: dict[str, Any] = pool.snapshot()
    return (
        f"pool {numbers['pool_in_use']}/{numbers['pool_open']} in use of {numbers['pool_size']}, "
        f"{numbers['pool_waiting']} waiting"
    )
