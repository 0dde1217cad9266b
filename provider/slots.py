"""A counting semaphore whose uncontended take is a plain function call (no await, no future).

Every call takes two (a handler slot, a pool slot); asyncio.Semaphore makes each a coroutine
even when a slot is free. Here `try_take` is the fast path and `take` waits only when none is:
slots are handed to waiters in arrival order, and a waiter that gives up (timeout, cancel) as a
slot reaches it passes the slot on, so none is ever lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Slots:
    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

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
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed to us as we gave up: the next waiter has it
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Return a slot: to the longest waiter, else to the free count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
