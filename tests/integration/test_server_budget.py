"""Hundreds of links on one small server: one connection budget, shared fairly, never refused.

A PostgreSQL of this module's own, started with `max_connections` 60 (3 reserved): the room for
200 components with default pools (8 connections each here) is a fifth of what they would ask.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from devkit.local_postgres import running_postgres
from provider.postgres.server_budget import room_from_settings
from provider.postgres.service import PostgresService
from provider.wit.values import Ok
from tests import capabilities
from tests.waiting import until

MAX_CONNECTIONS = 60
ROLES = [f"tenant_{n}" for n in range(4)]  # links with different credentials, one server


@pytest.fixture(scope="module")
def small_server() -> Iterator[Any]:
    with running_postgres(own=True, max_connections=MAX_CONNECTIONS) as server:
        capabilities.require(
            "small-server",
            server.kind == "machine",
            "a server of our own with a small max_connections needs the machine's PostgreSQL",
        )
        asyncio.run(_create_roles(server))
        yield server


async def _create_roles(server: Any) -> None:
    admin = await asyncpg.connect(server.dsn())
    try:
        for role in [*ROLES, "hog"]:
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-secret'")
    finally:
        await admin.close()


@pytest.fixture
async def database(small_server: Any) -> str:
    name: str = await small_server.create_database("tenants")
    return name


def link_config(server: Any, database: str, role: str, **extra: str) -> dict[str, str]:
    return {
        **server.link_config(database),
        "POSTGRES_USERNAME": role,
        "POSTGRES_PASSWORD": f"{role}-secret",
        **extra,
    }


class PeakConnections:
    """The most client connections the tenants' roles held at once, sampled as superuser."""

    def __init__(self, server: Any) -> None:
        self.server, self.peak, self._stop = server, 0, asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakConnections:
        admin = await asyncpg.connect(self.server.dsn())

        async def sample() -> None:
            try:
                while not self._stop.is_set():
                    count = await admin.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'tenant%'"
                    )
                    self.peak = max(self.peak, int(count))
                    await asyncio.sleep(0.01)
            finally:
                await admin.close()

        self._task = asyncio.create_task(sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def test_200_links_share_the_server_and_every_call_is_answered(
    small_server: Any, database: str
) -> None:
    service = PostgresService()
    links = [f"component-{n:03d}" for n in range(200)]
    try:
        for n, link in enumerate(links):
            await service.put_link(link, link_config(small_server, database, ROLES[n % 4]))
        budget = service.links[links[0]].pool.budget
        assert all(service.links[link].pool.budget is budget for link in links)
        async with PeakConnections(small_server) as peak:
            calls = [service.query(link, "SELECT pg_sleep(0.1)", []) for link in links * 4]
            results = await asyncio.gather(*calls)
        failed = [r for r in results if not isinstance(r, Ok)]
        assert not failed, f"{len(failed)} of 800 failed, e.g. {failed[0]}"
        assert budget.size == room_from_settings(MAX_CONNECTIONS, 3) == 52
        assert 0 < peak.peak <= budget.size
        assert budget.refusals == 0  # the budget kept us inside the server's room
        assert budget.waiting == 0 and budget.held <= budget.size
    finally:
        await service.close()


async def test_the_servers_refusal_makes_calls_wait_not_fail(
    small_server: Any, database: str
) -> None:
    """Another client takes all but two of the server's slots: our budget believes in 52, the
    server says 53300 (too many clients); the calls wait for room, and get it when the other
    client lets go."""
    hogs: list[Any] = []
    dsn = small_server.dsn(database).replace(
        f"{small_server.user}:{small_server.password}", "hog:hog-secret"
    )
    while True:  # until the server is full, past backends of earlier tests still exiting
        before = len(hogs)
        while True:
            try:
                hogs.append(await asyncpg.connect(dsn))
            except asyncpg.exceptions.TooManyConnectionsError:
                break
        if len(hogs) == before:
            break
        await asyncio.sleep(0.3)
    for hog in hogs[-2:]:
        await hog.close()
    hogs = hogs[:-2]
    service = PostgresService()
    try:
        for n in range(5):
            await service.put_link(f"c{n}", link_config(small_server, database, ROLES[0]))
        calls = [
            asyncio.create_task(service.query(f"c{n}", "SELECT pg_sleep(0.3)", []))
            for n in range(5)
            for _ in "ab"
        ]
        budget = service.links["c0"].pool.budget
        await until(lambda: budget.refusals > 0 and budget.waiting > 0, "calls refused, waiting")
        healthy, message = await service.health()
        answered = [call.result() for call in calls if call.done()]
        assert all(isinstance(r, Ok) for r in answered), answered
        assert healthy, message
        assert "the connection budget is the bottleneck" in message, message
        await asyncio.sleep(0.3)
        await asyncio.gather(*(hog.close() for hog in hogs))
        results = await asyncio.gather(*calls)
        assert all(isinstance(r, Ok) for r in results), results

        async def no_bottleneck() -> bool:
            healthy, message = await service.health()
            return healthy and "bottleneck" not in message

        await until(no_bottleneck, "health without the bottleneck once the room is back")
    finally:
        await asyncio.gather(*(hog.close() for hog in hogs), return_exceptions=True)
        await service.close()


async def test_a_full_budget_answers_within_the_acquire_timeout_naming_the_bound(
    small_server: Any, database: str
) -> None:
    service = PostgresService()
    extra = {"POSTGRES_SERVER_CONNECTIONS": "1", "POSTGRES_ACQUIRE_TIMEOUT": "0.5"}
    try:
        for link in ("busy", "waiting"):
            await service.put_link(link, link_config(small_server, database, ROLES[1], **extra))
        busy = asyncio.create_task(service.query("busy", "SELECT pg_sleep(2)", []))
        await until(lambda: service.links["busy"].pool.in_use == 1, "the busy call running")
        result = await service.query("waiting", "SELECT 1", [])
        assert not busy.done()  # answered while the budget's one connection was still busy
        assert not isinstance(result, Ok)
        text = str(result.value.value)
        assert result.value.tag == "unexpected"
        assert "POSTGRES_ACQUIRE_TIMEOUT" in text and "connection budget" in text, text
        assert "POSTGRES_SERVER_CONNECTIONS" in text and "0 of 1" not in text, text
        assert isinstance(await busy, Ok)
        assert isinstance(await service.query("waiting", "SELECT 1", []), Ok)
    finally:
        await service.close()


async def test_a_waiting_link_gets_the_least_recently_used_idle_connection_of_another(
    small_server: Any, database: str
) -> None:
    """Room comes from another link's idle connection: handed over as it is when both links
    use the same database and credentials (the session reset between them), closed and opened
    anew when they do not."""
    service = PostgresService()
    extra = {"POSTGRES_SERVER_CONNECTIONS": "2"}
    try:
        for link, role in (("a", ROLES[2]), ("same", ROLES[2]), ("other", ROLES[3])):
            await service.put_link(link, link_config(small_server, database, role, **extra))
        setting = "SELECT set_config('application_name', 'left-by-a', false)"
        both = [service.query("a", setting, []), service.query("a", "SELECT pg_sleep(0.1)", [])]
        assert all(isinstance(r, Ok) for r in await asyncio.gather(*both))
        a_pool, budget = service.links["a"].pool, service.links["a"].pool.budget
        assert (a_pool.idle, budget.held) == (2, 2)
        pids = {c.get_server_pid() for c in a_pool.connections()}

        seen = await service.query(
            "same", "SELECT pg_backend_pid(), current_setting('application_name')", []
        )
        assert isinstance(seen, Ok), seen
        pid, application_name = (cell["value"].value for cell in seen.value[0])
        assert pid in pids and application_name != "left-by-a"  # moved, and reset
        assert (budget.hand_overs, budget.room_closes, a_pool.idle) == (1, 0, 1)

        assert isinstance(await service.query("other", "SELECT 1", []), Ok)
        assert (budget.hand_overs, budget.room_closes) == (1, 1)  # another role: closed
        assert a_pool.idle == 0 and service.links["other"].pool.open_connections == 1
        metrics = service.metrics.text().decode()
        for name, value in (("room_closes_total", 1), ("hand_overs_total", 1),
                            ("connections_budget", 2)):  # fmt: skip
            line = f'sqldb_postgres_server_{name}{{server="{budget.server}"}} {value:.1f}'
            assert line in metrics, metrics
    finally:
        await service.close()


async def test_the_smallest_cap_of_a_servers_links_applies_while_they_exist(
    small_server: Any, database: str
) -> None:
    service = PostgresService()
    try:
        await service.put_link("a", link_config(small_server, database, ROLES[3]))
        await service.put_link(
            "b", link_config(small_server, database, ROLES[3], POSTGRES_SERVER_CONNECTIONS="3")
        )
        budget = service.links["a"].pool.budget
        assert budget.cap == 3
        await service.delete_link("b")
        assert budget.cap is None
        assert isinstance(await service.query("a", "SELECT 1", []), Ok)
        assert budget.size == room_from_settings(MAX_CONNECTIONS, 3)  # read once, from the server
    finally:
        await service.close()
