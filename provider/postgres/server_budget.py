"""The connections one PostgreSQL server gives this replica, shared fairly by every pool on it.

PostgreSQL counts every client connection against one `max_connections`, whichever link,
database or credentials opened it. So each pool takes a unit of its server's budget before it
opens a connection, and the unit comes back when that connection closes (asyncpg's termination
listener: once, however it closed). A call that finds no unit free waits, bounded by its
deadline, and units go first to the pool holding the fewest connections: every link gets its
first connection before any link gets its ninth. A waiting call makes room by taking another
pool's least recently used idle connection; a pool holding more than its fair share hands a
released connection on instead of keeping it. Either way the connection itself moves to the
waiting pool when both open the same database with the same credentials and settings (the
usual case: components sharing one database), and is closed to free its unit otherwise.

The budget is what the server allows ordinary users, learned from its first connection
(`room_from_settings`), capped by `POSTGRES_SERVER_CONNECTIONS`. The server's own refusal
(SQLSTATE 53300: another client or replica took what we counted on, or a closed connection's
backend has not exited yet) lowers the room to what we hold (`refused`); after a pause one
connection tries again, and each that succeeds lets one more try, up to the budget. Calls wait
through it instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

# Before the server's room is known, only this many connections are opened at once: the first
# to succeed reads the room (so 200 links starting together do not all rush the server).
UNKNOWN_ROOM = 4
REFUSAL_PAUSE = 0.2  # seconds between tries after the server refused a connection (53300)
RECENT_REFUSAL = 1.0  # seconds a refusal is news (health), when no call waits any more


class Grant:
    """A waiter's answer: a unit of the budget is reserved for it (it opens a connection)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GRANT"


GRANT = Grant()


class Holder(Protocol):
    """Whoever holds units (a pool; a health probe, for one connection)."""

    held: int  # units it holds: connections open or being opened


class Member(Holder, Protocol):
    """A pool drawing from the budget (LinkPool)."""

    def oldest_idle_since(self) -> float | None:
        """When its least recently used idle connection went idle (None: none idle)."""

    def take_oldest_idle(self) -> Any | None:
        """That connection, no longer the pool's idle one (None: none)."""

    def adopt(self, connection: Any, giver: Any) -> bool:
        """Take over `giver`'s connection, with its unit, if it opens the same database with
        the same credentials and settings; False (nothing changed) otherwise."""

    def settle(self, connection: Any) -> None:
        """Take back a connection handed to a waiter that gave up before it got it."""


def room_from_settings(max_connections: int, reserved: int) -> int:
    """The connections a replica may open by default: what ordinary users may have
    (`max_connections` minus the reserved slots), minus a margin for every other client
    (psql, migrations, monitoring, another service): a tenth, at least two."""
    ordinary = max_connections - reserved
    return max(1, ordinary - max(2, ordinary // 10))


class ServerBudget:
    def __init__(self, server: str, cap: int | None = None) -> None:
        self.server = server  # "host:port", for metrics, health and errors
        self.room: int | None = None  # learned from the server's settings
        self.reading = False  # a pool is reading the room now
        self.cap = cap  # POSTGRES_SERVER_CONNECTIONS (the smallest any link sets)
        self.held = 0  # units out: connections open or being opened
        self.waiting = 0  # calls waiting for a unit or a connection
        self.closing = 0  # idle connections being closed to make room
        self.room_closes = 0  # idle connections closed to make room, ever
        self.hand_overs = 0  # connections passed to another pool with the same settings, ever
        self.refusals = 0  # connections the server refused (53300), ever
        self.members: set[Member] = set()
        self._queues: dict[Member, deque[asyncio.Future[Any]]] = {}
        self._ceiling = math.inf  # while refused: what we held when the server said no
        self._refused_at = -math.inf  # time.monotonic() of the latest refusal
        self._pause: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- numbers ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections this replica may hold on the server now."""
        room = self.room if self.room is not None else UNKNOWN_ROOM
        return room if self.cap is None else min(room, self.cap)

    def limit(self) -> float:
        return min(self.size, self._ceiling)

    @property
    def refused_now(self) -> bool:
        """The server refused us lately, and calls still feel it (they wait, or it was just
        now); the ceiling itself lasts until the next connection shows room."""
        recent = time.monotonic() - self._refused_at < RECENT_REFUSAL
        return self._ceiling < math.inf and (bool(self._queues) or recent)

    def snapshot(self) -> dict[str, float]:
        return {
            "server_connections_budget": self.size,
            "server_connections_open": self.held,
            "server_connections_waiting": self.waiting,
            "server_room_closes": self.room_closes,
            "server_hand_overs": self.hand_overs,
            "server_refusals": self.refusals,
        }

    def describe(self) -> str:
        learned = "" if self.room is not None else " (the server's room not read yet)"
        refused = ", the server refuses more (53300)" if self.refused_now else ""
        return (
            f"server {self.server}: {self.held} of {self.size} connections{learned} for "
            f"{len(self.members)} pool(s), {self.waiting} call(s) waiting{refused}"
        )

    # --- members ------------------------------------------------------------------------------

    def join(self, member: Member) -> None:
        self.members.add(member)

    def leave(self, member: Member, error: Callable[[], BaseException]) -> None:
        """The pool is retired: its waiting calls get `error()`; its connections still give
        their units back when they close."""
        self.members.discard(member)
        queue = self._queues.pop(member, deque())
        self.waiting -= len(queue)
        for waiter in queue:
            if not waiter.done():
                waiter.set_exception(error())

    def learn(self, room: int) -> None:
        self.room = room
        self._grant()

    def set_cap(self, cap: int | None) -> None:
        self.cap = cap
        self._grant()

    # --- units --------------------------------------------------------------------------------

    def try_take(self, member: Holder) -> bool:
        """A unit now, if one is free and no call waits for one (first come, first served)."""
        if self.waiting or self.held >= self.limit():
            return False
        self.held += 1
        member.held += 1
        return True

    def give(self, member: Holder) -> None:
        """A unit back (its connection closed, or was never opened)."""
        self.held -= 1
        member.held -= 1
        self._grant()

    async def wait(self, member: Member, deadline: float) -> Any:
        """GRANT (a unit: open a connection) or a connection `member` released meanwhile;
        TimeoutError at `deadline` (the event loop's clock)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._queues.setdefault(member, deque()).append(waiter)
        self.waiting += 1  # (always the number of futures queued, live or not)
        self._make_room(member)
        self._grant()  # room may be free already (a cap raised, a pause ended)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                given = waiter.result()  # reached us as we gave up: pass it on
                if given is GRANT:
                    self.give(member)
                else:
                    member.settle(given)
            else:  # timed out or cancelled (the future with it), or refused by `leave`
                waiter.cancel()
                self._forget(member, waiter)
            raise

    def hand_to_waiter(self, member: Member, connection: Any) -> bool:
        """Give `connection` (just released by `member`) to one of its own waiting calls."""
        waiter = self._next_waiter(member)
        if waiter is None:
            return False
        waiter.set_result(connection)
        return True

    def pass_on(self, giver: Member, connection: Any) -> bool:
        """Hand `connection` (released by `giver`) to the waiting pool holding the fewest
        connections, if that pool can use it as it is (see `Member.adopt`)."""
        others = [m for m in self._queues if m is not giver]
        return bool(others) and self._pass(connection, giver, min(others, key=_held))

    def should_yield(self, member: Member) -> bool:
        """A connection `member` just released should close so another pool gets its unit:
        some other pool's call waits, no close already under way covers it, and `member` has
        no call of its own waiting or holds more than one connection more than that pool."""
        others = [(m.held, len(q)) for m, q in self._queues.items() if m is not member]
        if not others or self.closing >= sum(count for _, count in others):
            return False
        fewest = min(held for held, _ in others)
        return member not in self._queues or member.held > fewest + 1

    def close_for_room(self, connection: Any) -> None:
        """Close `connection` (idle, unowned) so its unit goes to a waiting call."""
        self.room_closes += 1
        self.closing += 1
        task = asyncio.get_running_loop().create_task(self._close(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refused(self, member: Member) -> None:
        """The server refused `member`'s connection (53300): give the unit back, and open no
        more than we hold until one try after a pause succeeds."""
        self.refusals += 1
        self._refused_at = time.monotonic()
        self._ceiling = max(0, self.held - 1)
        self.give(member)
        self._pause_then_try()

    def connected(self, tried_after: int) -> None:
        """A connection opened; `tried_after` is `refusals` when its attempt began. One begun
        after the latest refusal shows the server has room again: one more connection may be
        tried, and so on up to the budget (one begun before it shows nothing new)."""
        if self._ceiling == math.inf or tried_after != self.refusals:
            return
        self._ceiling = self.held + 1
        if self._ceiling >= self.size:
            self._ceiling = math.inf
        self._grant()

    # --- inside -------------------------------------------------------------------------------

    def _grant(self) -> None:
        """Free units to waiting calls, the pool holding the fewest connections first (ties:
        the pool that began waiting first)."""
        while self._queues and self.held < self.limit():
            member = min(self._queues, key=_held)
            waiter = self._next_waiter(member)
            if waiter is None:
                continue
            self.held += 1
            member.held += 1
            waiter.set_result(GRANT)

    def _make_room(self, waiting: Member) -> None:
        """Close other pools' least recently used idle connections, one per waiting call not
        already covered by a close under way."""
        while self.closing < self.waiting and self.held >= self.limit():
            idle = [
                (since, m)
                for m in self.members
                if m is not waiting and (since := m.oldest_idle_since()) is not None
            ]
            if not idle:
                return
            _, victim = min(idle, key=lambda pair: pair[0])
            connection = victim.take_oldest_idle()
            if connection is None:
                return
            if not self._pass(connection, victim, waiting):
                self.close_for_room(connection)

    def _pass(self, connection: Any, giver: Member, taker: Member) -> bool:
        """`connection` with its unit from `giver` to a waiting call of `taker`: no connection
        closed and opened again (the taker's call resets the session, as a hand-over between
        links always does)."""
        if self._first_live(taker) is None or not taker.adopt(connection, giver):
            return False
        self.hand_overs += 1
        return self.hand_to_waiter(taker, connection)

    def _first_live(self, member: Member) -> asyncio.Future[Any] | None:
        """`member`'s first waiter still waiting (those given up before it are dropped)."""
        queue = self._queues.get(member)
        while queue and queue[0].done():
            queue.popleft()
            self.waiting -= 1
        if not queue:
            self._queues.pop(member, None)
            return None
        return queue[0]

    def _next_waiter(self, member: Member) -> asyncio.Future[Any] | None:
        """`member`'s first waiter still waiting, out of the queue."""
        waiter = self._first_live(member)
        if waiter is not None:
            self._forget(member, waiter)
        return waiter

    async def _close(self, connection: Any) -> None:
        try:
            await asyncio.wait_for(connection.close(), 5)
        except Exception:
            connection.terminate()
        finally:
            self.closing -= 1

    def _pause_then_try(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
        self._pause = asyncio.get_running_loop().call_later(REFUSAL_PAUSE, self._try_one_more)

    def _try_one_more(self) -> None:
        """After a pause: one more connection than we hold may be tried (`refused` again, or
        `connected`, which lifts the ceiling)."""
        self._pause = None
        if not self._queues:  # nobody waits: the next connection wanted is the try
            self._ceiling = math.inf
            return
        self._ceiling = self.held + 1
        self._grant()

    def _forget(self, member: Member, waiter: asyncio.Future[Any]) -> None:
        queue = self._queues.get(member)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(waiter)
            self.waiting -= 1
        if not queue:
            del self._queues[member]

    async def close(self) -> None:
        """Shutdown: the closes made for room finish (or are abandoned)."""
        if self._pause is not None:
            self._pause.cancel()
        for task in list(self._tasks):
            task.cancel()


def _held(member: Member) -> int:
    return member.held


class ServerBudgets:
    """One budget per server (host and port), shared by every pool that connects to it."""

    def __init__(self) -> None:
        self._budgets: dict[str, ServerBudget] = {}

    def for_server(self, server: str) -> ServerBudget:
        budget = self._budgets.get(server)
        if budget is None:
            budget = self._budgets[server] = ServerBudget(server)
        return budget

    def budgets(self) -> Iterable[ServerBudget]:
        return list(self._budgets.values())

    def set_caps(self, caps: dict[str, int | None]) -> None:
        """Each server's cap (POSTGRES_SERVER_CONNECTIONS: the smallest of its links)."""
        for server, budget in self._budgets.items():
            if budget.cap != caps.get(server):
                budget.set_cap(caps.get(server))

    def forget_unused(self) -> None:
        """Budgets of servers no pool uses and no connection holds (the room is read again if
        a link to it comes back: it may have changed)."""
        for server, budget in list(self._budgets.items()):
            if not budget.members and budget.held == 0 and not budget.closing:
                del self._budgets[server]

    async def close(self) -> None:
        for budget in self.budgets():
            await budget.close()
