"""A counting semaphore whose uncontended take is a plain function call (no await, no future).

Every call takes two (a handler slot, a pool slot); asyncio.Semaphore makes each a coroutine
even when a slot is free, and a bounded wait (`asyncio.timeout`) costs a timer per waiting
call. Here `try_take` is the fast path, `take` waits only when no slot is free, and all the
waiters' deadlines share one timer, which fires only when the earliest deadline passes. Slots
go to waiters in arrival order; a waiter that gives up (timeout, cancel) as a slot reaches it
passes the slot on, so none is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable


class Slots:
    __slots__ = ("_free", "_timer", "_timer_at", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[tuple[asyncio.Future[None], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def locked(self) -> bool:
        return self._free <= 0 or bool(self._waiters)

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for it (first come, first served)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self, timeout: float | None = None) -> None:
        """A slot, waiting up to `timeout` seconds (TimeoutError) or without bound."""
        if self.try_take():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        deadline = math.inf if timeout is None else loop.time() + timeout
        entry = (waiter, deadline)
        self._waiters.append(entry)
        if deadline < self._timer_at:
            self._schedule(loop, deadline)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give()  # handed to us as we were cancelled: the next waiter has it
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            raise

    def give(self) -> None:
        """Return a slot: to the longest waiter, else to the free count."""
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def refuse_waiters(self, error: Callable[[], BaseException]) -> None:
        """Fail every waiter now with `error()` (none of them gets a slot): their pool is gone."""
        waiters, self._waiters = self._waiters, deque()
        for waiter, _ in waiters:
            if not waiter.done():
                waiter.set_exception(error())

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop) if when < math.inf else None
        self._timer_at = when

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose deadline has passed; the timer moves to the next deadline."""
        now = loop.time()
        earliest = math.inf
        kept: deque[tuple[asyncio.Future[None], float]] = deque()
        for waiter, deadline in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError())
            else:
                kept.append((waiter, deadline))
                earliest = min(earliest, deadline)
        self._waiters = kept
        self._timer = None
        self._timer_at = math.inf
        if earliest < math.inf:
            self._schedule(loop, earliest)
