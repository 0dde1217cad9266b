"""The server budget's decisions: who gets a unit, when room is made, what a refusal does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provider.postgres.config import ConfigError, settings_from_config
from provider.postgres.server_budget import (
    GRANT,
    REFUSAL_PAUSE,
    UNKNOWN_ROOM,
    ServerBudget,
    ServerBudgets,
    room_from_settings,
)


class FakeConnection:
    def __init__(self, budget: ServerBudget, pool: FakePool) -> None:
        self.budget, self.pool, self.closed = budget, pool, False

    async def close(self) -> None:
        self.closed = True
        self.budget.give(self.pool)  # what the pool's termination listener does

    def terminate(self) -> None:
        self.closed = True
        self.budget.give(self.pool)


class FakePool:
    """A pool as the budget sees it: units held, idle connections oldest first."""

    def __init__(self, budget: ServerBudget, key: str = "") -> None:
        self.budget = budget
        self.key = key or str(id(self))  # pools with equal keys can use each other's connections
        self.held = 0
        self.idle: list[tuple[float, FakeConnection]] = []
        self.settled: list[Any] = []
        budget.join(self)

    def open_idle(self, since: float) -> FakeConnection:
        assert self.budget.try_take(self)
        connection = FakeConnection(self.budget, self)
        self.idle.append((since, connection))
        return connection

    def oldest_idle_since(self) -> float | None:
        return self.idle[0][0] if self.idle else None

    def take_oldest_idle(self) -> FakeConnection | None:
        return self.idle.pop(0)[1] if self.idle else None

    def adopt(self, connection: FakeConnection, giver: FakePool) -> bool:
        if giver.key != self.key:
            return False
        giver.held -= 1
        self.held += 1
        connection.pool = self
        return True

    def settle(self, connection: Any) -> None:
        self.settled.append(connection)


def learned(size: int) -> ServerBudget:
    budget = ServerBudget("db:5432")
    budget.learn(size)
    return budget


def test_room_is_what_ordinary_users_get_less_a_margin() -> None:
    assert room_from_settings(60, 3) == 52  # 57 less a tenth (5)
    assert room_from_settings(100, 3) == 88  # 97 less 9
    assert room_from_settings(10, 3) == 5  # the margin is at least two
    assert room_from_settings(4, 3) == 1  # never nothing


async def test_units_run_out_at_the_size_and_come_back() -> None:
    budget = learned(2)
    pool = FakePool(budget)
    assert budget.try_take(pool) and budget.try_take(pool)
    assert not budget.try_take(pool)
    assert (budget.held, pool.held) == (2, 2)
    budget.give(pool)
    assert budget.try_take(pool)


async def test_the_cap_bounds_the_budget_and_applies_before_the_room_is_known() -> None:
    budget = ServerBudget("db:5432", cap=2)
    assert budget.size == 2
    budget.set_cap(None)
    assert budget.size == UNKNOWN_ROOM
    budget.learn(50)
    budget.set_cap(7)
    assert budget.size == 7


async def test_learning_the_room_lets_the_waiting_calls_in() -> None:
    budget = ServerBudget("db:5432")
    pool = FakePool(budget)
    for _ in range(UNKNOWN_ROOM):
        assert budget.try_take(pool)
    deadline = asyncio.get_running_loop().time() + 5
    waiters = [asyncio.create_task(budget.wait(pool, deadline)) for _ in range(3)]
    await asyncio.sleep(0)
    assert budget.waiting == 3
    budget.learn(UNKNOWN_ROOM + 3)
    assert await asyncio.gather(*waiters) == [GRANT] * 3
    assert budget.held == UNKNOWN_ROOM + 3 and budget.waiting == 0


async def test_a_freed_unit_goes_to_the_pool_holding_fewest_even_if_it_came_later() -> None:
    budget = learned(3)
    big, small = FakePool(budget), FakePool(budget)
    for _ in range(3):
        assert budget.try_take(big)
    deadline = asyncio.get_running_loop().time() + 5
    big_waits = asyncio.create_task(budget.wait(big, deadline))
    await asyncio.sleep(0)
    small_waits = asyncio.create_task(budget.wait(small, deadline))
    await asyncio.sleep(0)
    budget.give(big)
    assert await small_waits is GRANT
    assert not big_waits.done()
    assert (big.held, small.held) == (2, 1)
    budget.give(small)
    assert await big_waits is GRANT


async def test_a_wait_ends_at_its_deadline_with_nothing_leaked() -> None:
    budget = learned(1)
    pool = FakePool(budget)
    assert budget.try_take(pool)
    with pytest.raises(TimeoutError):
        await budget.wait(pool, asyncio.get_running_loop().time() + 0.05)
    assert budget.waiting == 0 and budget.held == 1
    budget.give(pool)
    assert budget.try_take(pool)


async def test_a_unit_granted_to_a_call_as_it_is_cancelled_passes_on() -> None:
    budget = learned(1)
    first, second = FakePool(budget), FakePool(budget)
    assert budget.try_take(first)
    deadline = asyncio.get_running_loop().time() + 5
    cancelled = asyncio.create_task(budget.wait(second, deadline))
    await asyncio.sleep(0)
    other = asyncio.create_task(budget.wait(second, deadline))
    await asyncio.sleep(0)
    budget.give(first)  # granted to `cancelled`, which is cancelled before it runs
    cancelled.cancel()
    assert await other is GRANT
    assert budget.held == 1 and second.held == 1 and budget.waiting == 0


async def test_a_connection_handed_to_an_abandoned_wait_goes_back_to_its_pool() -> None:
    budget = learned(1)
    pool = FakePool(budget)
    assert budget.try_take(pool)
    waiter = asyncio.create_task(budget.wait(pool, asyncio.get_running_loop().time() + 5))
    await asyncio.sleep(0)
    assert budget.hand_to_waiter(pool, "connection")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.settled == ["connection"]
    assert not budget.hand_to_waiter(pool, "another")  # nobody waits any more


async def test_a_waiting_call_closes_the_least_recently_used_idle_connection_elsewhere() -> None:
    budget = learned(3)
    a, b, c = FakePool(budget), FakePool(budget), FakePool(budget)
    a.open_idle(since=20.0)
    older = b.open_idle(since=10.0)
    a.open_idle(since=30.0)
    got = await budget.wait(c, asyncio.get_running_loop().time() + 5)
    assert got is GRANT
    assert older.closed and budget.room_closes == 1
    assert (a.held, b.held, c.held) == (2, 0, 1)


async def test_without_idle_connections_a_call_waits_for_a_release() -> None:
    budget = learned(1)
    busy, waiting = FakePool(budget), FakePool(budget)
    assert budget.try_take(busy)
    task = asyncio.create_task(budget.wait(waiting, asyncio.get_running_loop().time() + 5))
    await asyncio.sleep(0.01)
    assert not task.done() and budget.room_closes == 0
    budget.give(busy)
    assert await task is GRANT


async def test_a_released_connection_yields_to_a_poorer_pool() -> None:
    budget = learned(4)
    rich, poor = FakePool(budget), FakePool(budget)
    for _ in range(4):
        assert budget.try_take(rich)
    assert not budget.should_yield(rich)  # nobody waits
    deadline = asyncio.get_running_loop().time() + 5
    poor_waits = asyncio.create_task(budget.wait(poor, deadline))
    await asyncio.sleep(0)
    assert budget.should_yield(rich)  # no call of its own waits
    rich_waits = asyncio.create_task(budget.wait(rich, deadline))
    await asyncio.sleep(0)
    assert budget.should_yield(rich)  # its own call waits, but it holds 4 and poor none
    assert not budget.should_yield(poor)
    budget.closing = 1  # a close already under way covers poor's one call
    assert not budget.should_yield(rich)
    budget.closing = 0
    for _ in range(3):
        budget.give(rich)
    assert await poor_waits is GRANT  # (fewest first)
    assert await rich_waits is GRANT


async def test_an_even_split_keeps_its_connections_for_its_own_calls() -> None:
    budget = learned(2)
    a, b = FakePool(budget), FakePool(budget)
    assert budget.try_take(a) and budget.try_take(b)
    deadline = asyncio.get_running_loop().time() + 5
    waits = [asyncio.create_task(budget.wait(p, deadline)) for p in (a, b)]
    await asyncio.sleep(0)
    assert not budget.should_yield(a)  # a holds 1, b holds 1: a keeps it for its own call
    assert budget.hand_to_waiter(a, "connection")
    assert await waits[0] == "connection"
    waits[1].cancel()


async def test_a_refusal_holds_new_connections_at_what_we_hold_then_tries_one() -> None:
    budget = learned(10)
    pool = FakePool(budget)
    for _ in range(4):
        assert budget.try_take(pool)
    budget.refused(pool)  # the fourth was refused by the server
    assert budget.refusals == 1 and budget.held == 3 and budget.refused_now
    assert not budget.try_take(pool)
    loop = asyncio.get_running_loop()
    waits = [asyncio.create_task(budget.wait(pool, loop.time() + 5)) for _ in range(3)]
    await asyncio.sleep(REFUSAL_PAUSE / 2)
    assert budget.waiting == 3  # nothing granted during the pause
    await asyncio.sleep(REFUSAL_PAUSE)
    assert sum(w.done() for w in waits) == 1  # one try after the pause
    budget.connected(budget.refusals - 1)  # begun before the refusal: it shows nothing
    await asyncio.sleep(0)
    assert sum(w.done() for w in waits) == 1
    budget.connected(budget.refusals)  # the try worked: one more may try
    await asyncio.sleep(0)
    assert sum(w.done() for w in waits) == 2 and budget.refused_now
    budget.connected(budget.refusals)
    await asyncio.sleep(0)
    assert all(w.done() for w in waits) and budget.held == 6


async def test_room_found_again_opens_up_to_the_whole_budget() -> None:
    budget = learned(3)
    pool = FakePool(budget)
    assert budget.try_take(pool) and budget.try_take(pool)
    budget.refused(pool)
    assert budget.try_take(pool) is False
    await asyncio.sleep(REFUSAL_PAUSE * 1.5)  # nobody waited: the next connection is the try
    assert budget.try_take(pool)
    budget.connected(budget.refusals)
    assert not budget.refused_now and budget.try_take(pool)


async def test_a_refusal_with_nobody_waiting_clears_after_the_pause() -> None:
    budget = learned(10)
    pool = FakePool(budget)
    assert budget.try_take(pool)
    budget.refused(pool)
    await asyncio.sleep(REFUSAL_PAUSE * 1.5)
    assert not budget.refused_now and budget.try_take(pool)


async def test_a_retired_pool_s_waiting_calls_are_told_at_once() -> None:
    budget = learned(1)
    busy, retired = FakePool(budget), FakePool(budget)
    assert budget.try_take(busy)
    task = asyncio.create_task(budget.wait(retired, asyncio.get_running_loop().time() + 5))
    await asyncio.sleep(0)
    budget.leave(retired, lambda: LookupError("retired"))
    with pytest.raises(LookupError):
        await task
    assert budget.waiting == 0 and retired not in budget.members


async def test_budgets_are_per_server_and_dropped_when_unused() -> None:
    budgets = ServerBudgets()
    one = budgets.for_server("a:5432")
    assert budgets.for_server("a:5432") is one and budgets.for_server("b:5432") is not one
    pool = FakePool(one)
    budgets.set_caps({"a:5432": 3})
    assert one.cap == 3 and budgets.for_server("b:5432").cap is None
    assert one.try_take(pool)
    one.leave(pool, lambda: LookupError())
    budgets.forget_unused()
    assert budgets.for_server("a:5432") is one  # a connection still holds a unit
    one.give(pool)
    budgets.forget_unused()
    assert budgets.for_server("a:5432") is not one


async def test_an_idle_connection_of_the_same_database_moves_instead_of_closing() -> None:
    budget = learned(2)
    a, b = FakePool(budget, key="same"), FakePool(budget, key="same")
    moved = a.open_idle(since=1.0)
    a.open_idle(since=2.0)
    got = await budget.wait(b, asyncio.get_running_loop().time() + 5)
    assert got is moved and not moved.closed
    assert (budget.hand_overs, budget.room_closes) == (1, 0)
    assert (a.held, b.held, budget.held) == (1, 1, 2)


async def test_a_released_connection_passes_to_the_neediest_pool_that_can_use_it() -> None:
    budget = learned(2)
    rich, same, other = (FakePool(budget, key) for key in ("k", "k", "x"))
    assert budget.try_take(rich) and budget.try_take(rich)
    deadline = asyncio.get_running_loop().time() + 5
    other_waits = asyncio.create_task(budget.wait(other, deadline))
    await asyncio.sleep(0)
    connection = FakeConnection(budget, rich)
    assert budget.should_yield(rich)
    assert not budget.pass_on(rich, connection)  # `other` (a different database) is neediest
    same_waits = asyncio.create_task(budget.wait(same, deadline))
    await asyncio.sleep(0)
    assert not budget.pass_on(rich, connection)  # still `other` first (it came first)
    other_waits.cancel()
    await asyncio.sleep(0)
    assert budget.pass_on(rich, connection)
    assert await same_waits is connection
    assert (rich.held, same.held, budget.hand_overs) == (1, 1, 1)


async def test_a_wait_given_up_as_units_move_is_counted_out_exactly_once() -> None:
    """A waiter cancelled (its timeout fired) but not yet run when a unit is freed: the grant
    skips it and serves the next one, and `waiting` ends at zero, not one (a count left behind
    would refuse every later `try_take`)."""
    budget = learned(1)
    busy, waiting = FakePool(budget), FakePool(budget, key="k")
    assert budget.try_take(busy)
    deadline = asyncio.get_running_loop().time() + 5
    gone = asyncio.create_task(budget.wait(waiting, deadline))
    served = asyncio.create_task(budget.wait(waiting, deadline))
    await asyncio.sleep(0)
    gone.cancel()
    budget.give(busy)  # before `gone` has run its cancellation
    assert await served is GRANT
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert budget.waiting == 0 and waiting.held == 1
    # A hand-over to a pool whose only waiter gave up leaves no empty queue behind.
    other = FakePool(budget, key="k")
    lost = asyncio.create_task(budget.wait(other, deadline))
    await asyncio.sleep(0)
    lost.cancel()
    assert not budget.pass_on(waiting, FakeConnection(budget, waiting))
    with pytest.raises(asyncio.CancelledError):
        await lost
    assert budget.waiting == 0
    budget.give(waiting)
    assert budget.try_take(other)


@pytest.mark.parametrize("raw", ["0", "-3", "ten", "1.5", "1e9"])
def test_a_server_cap_that_is_not_a_positive_integer_refuses_the_link(raw: str) -> None:
    values = {"POSTGRES_HOST": "db", "POSTGRES_PORT": "5432", "POSTGRES_USERNAME": "u",
              "POSTGRES_PASSWORD": "p", "POSTGRES_DATABASE": "d"}  # fmt: skip
    with pytest.raises(ConfigError, match="POSTGRES_SERVER_CONNECTIONS"):
        settings_from_config({**values, "POSTGRES_SERVER_CONNECTIONS": raw})
    huge = settings_from_config({**values, "POSTGRES_SERVER_CONNECTIONS": "9" * 30})
    budget = learned(52)
    budget.set_cap(huge.server_connections)
    assert budget.size == 52  # a cap above the server's room changes nothing
    assert settings_from_config(values).server_connections is None
