"""provider/common/slots.py: never more slots out than exist, first come first served, none lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider.common.slots import Slots


def test_fast_path_takes_without_waiting() -> None:
    slots = Slots(2)
    assert slots.try_take() and slots.try_take()
    assert not slots.try_take() and slots.locked()
    slots.give()
    assert slots.free == 1


async def test_waiters_are_served_in_order_and_timeouts_lose_nothing() -> None:
    slots = Slots(1)
    assert slots.try_take()
    served: list[int] = []

    async def waiter(number: int, timeout: float | None) -> None:
        await slots.take(timeout)
        served.append(number)

    first = asyncio.create_task(waiter(1, None))
    gives_up = asyncio.create_task(waiter(2, 0.01))
    third = asyncio.create_task(waiter(3, None))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await gives_up
    slots.give()
    await first
    slots.give()
    await third
    slots.give()
    assert served == [1, 3] and slots.free == 1 and slots.waiting == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.floats(0, 0.003), st.booleans()), max_size=30))
def test_never_more_out_than_exist(size: int, workers: list[tuple[float, bool]]) -> None:
    async def main() -> None:
        slots = Slots(size)
        out = 0
        peak = 0

        async def worker(hold: float, cancel_early: bool) -> None:
            nonlocal out, peak
            await slots.take()
            out += 1
            peak = max(peak, out)
            try:
                await asyncio.sleep(hold)
            finally:
                out -= 1
                slots.give()

        tasks = [asyncio.create_task(worker(hold, cancel)) for hold, cancel in workers]
        await asyncio.sleep(0)
        for task, (_, cancel) in zip(tasks, workers, strict=True):
            if cancel:
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert peak <= size
        assert slots.free == size and slots.waiting == 0

    asyncio.run(main())


async def test_refused_waiters_fail_at_once_and_hold_no_slot() -> None:
    slots = Slots(1)
    assert slots.try_take()
    waiters = [asyncio.create_task(slots.take(timeout)) for timeout in (None, 30.0)]
    await asyncio.sleep(0)
    assert slots.waiting == 2
    slots.refuse_waiters(lambda: LookupError("gone"))
    for waiter in waiters:
        with pytest.raises(LookupError, match="gone"):
            await waiter
    assert (slots.waiting, slots.free) == (0, 0)  # the one slot is still out, not doubled
    slots.give()
    assert (slots.free, slots.try_take()) == (1, True)
