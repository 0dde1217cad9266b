"""Polling with a deadline: what tests use instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def until(
    check: Callable[[], Awaitable[T]], what: str, seconds: float = ..., every: float = ...
) -> T: ...


@overload
async def until(
    check: Callable[[], T], what: str, seconds: float = ..., every: float = ...
) -> T: ...


async def until(
    check: Callable[[], Any], what: str, seconds: float = 10, every: float = 0.02
) -> Any:
    """The first truthy value `check()` returns (awaited if it is a coroutine); an
    AssertionError naming `what` when none comes within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s (last: {value!r:.300})")
        await asyncio.sleep(every)
