"""A database server that goes silent: every packet dropped, no reset, then the network heals.

The bounds under test (docs/configuration.md, "When the network goes silent"):
- a connection whose peer stops answering is dropped within `SILENCE_BOUND` (5 s) plus the
  kernel's timer granularity, and its call answered: a read with an error, a write with
  "outcome unknown";
- a call waiting for a connection, or opening one, is answered within POSTGRES_ACQUIRE_TIMEOUT
  (10 s by default) from its start;
- health answers within its deadline (0.8 s here, as for the host's default 2 s RPC timeout),
  false while the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import nats
import pytest

from devkit import packet_drop
from devkit.local_nats import running_nats
from devkit.local_postgres import running_postgres
from devkit.provider_harness import RunningProvider, linked_caller
from provider.nats.data_connection import PING_INTERVAL
from provider.postgres.service import PostgresService
from provider.wit.values import Case, Ok
from provider.wrpc.client import CallTimeout, WrpcClient
from tests import capabilities
from tests.waiting import until

SILENCE = 25.0  # seconds every packet is dropped (as in the measurement)
CALL_BOUND = 11.5  # acquire timeout 10 s + one last connect attempt (0.5 s) + scheduling
HEALTH_BOUND = 1.0


@pytest.fixture(scope="module")
def own_server() -> Iterator[Any]:
    """A server of this module's own: its port is the one that goes silent."""
    why_not = packet_drop.available()
    if why_not is not None:
        capabilities.unavailable("silence", why_not)
    with running_postgres(own=True) as server:
        capabilities.require("silence", not server.host.startswith("/"), "needs TCP")
        yield server


@pytest.fixture
async def database(own_server: Any) -> str:
    name: str = await own_server.create_database("silence")
    return name


class Timeline:
    """Every call's start, duration and outcome, and every health reply's."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, bool, str]] = []
        self.health: list[tuple[float, float, bool, str]] = []
        self.origin = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.origin


async def _call_every(service: Any, timeline: Timeline, stop: asyncio.Event) -> None:
    async def one() -> None:
        started = timeline.now()
        result = await service.query("app", "SELECT 1", [])
        text = "" if isinstance(result, Ok) else str(result.value.value)
        timeline.calls.append((started, timeline.now() - started, isinstance(result, Ok), text))

    running = set()
    while not stop.is_set():
        task = asyncio.create_task(one())
        running.add(task)
        task.add_done_callback(running.discard)
        await asyncio.sleep(0.5)
    await asyncio.gather(*running)


async def _health_every(service: Any, timeline: Timeline, stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = timeline.now()
        healthy, message = await service.health()
        timeline.health.append((started, timeline.now() - started, healthy, message))
        await asyncio.sleep(2)


async def test_a_silent_server_answers_every_call_and_health_within_bounds(
    own_server: Any, database: str
) -> None:
    service = PostgresService()
    try:
        await service.put_link(
            "app", {**own_server.link_config(database), "POSTGRES_POOL_SIZE": "4"}
        )
        warm = [service.query("app", "SELECT pg_sleep(0.05)", []) for _ in range(4)]
        assert all(isinstance(r, Ok) for r in await asyncio.gather(*warm))
        timeline, stop = Timeline(), asyncio.Event()
        workers = [
            asyncio.create_task(_call_every(service, timeline, stop)),
            asyncio.create_task(_health_every(service, timeline, stop)),
        ]
        await asyncio.sleep(1)
        silent_from = timeline.now()
        with packet_drop.dropped(own_server.port):
            await asyncio.sleep(SILENCE)
        healed_at = timeline.now()
        await until(
            lambda: any(ok and start > healed_at for start, _, ok, _ in timeline.calls),
            "a call started after the network healed succeeds",
            seconds=15,
        )
        await asyncio.sleep(2.5)  # a health reply after the heal
        stop.set()
        await asyncio.gather(*workers)
    finally:
        await service.close()

    slowest = max(duration for _, duration, _, _ in timeline.calls)
    assert slowest < CALL_BOUND, _figures(timeline, silent_from, healed_at)
    during = [c for c in timeline.calls if silent_from + 0.5 < c[0] < healed_at - CALL_BOUND]
    assert during and not any(ok for _, _, ok, _ in during), "calls during the silence failed"
    health_times = [duration for _, duration, _, _ in timeline.health]
    assert max(health_times) < HEALTH_BOUND, _figures(timeline, silent_from, healed_at)
    silent_health = [h for h in timeline.health if silent_from + 0.5 < h[0] < healed_at - 1]
    assert silent_health and not any(healthy for _, _, healthy, _ in silent_health)
    assert all(own_server.host in message for *_, message in silent_health), silent_health
    final = timeline.health[-1]
    assert final[0] > healed_at and final[2], final
    recovery = min(s + d for s, d, ok, _ in timeline.calls if ok and s > healed_at) - healed_at
    assert recovery < 5, _figures(timeline, silent_from, healed_at)
    print(_figures(timeline, silent_from, healed_at))


def _figures(timeline: Timeline, silent_from: float, healed_at: float) -> str:
    calls = timeline.calls
    recovered = [s + d for s, d, ok, _ in calls if ok and s > healed_at]
    return json.dumps(
        {
            "silence_s": round(healed_at - silent_from, 1),
            "calls": len(calls),
            "calls_failed": sum(not ok for _, _, ok, _ in calls),
            "slowest_call_s": round(max(d for _, d, _, _ in calls), 2),
            "health_replies_s": [round(d, 3) for _, d, _, _ in timeline.health],
            "health_values": [h for _, _, h, _ in timeline.health],
            "recovery_s": round(min(recovered) - healed_at, 2) if recovered else None,
            "errors": sorted({text[:160] for *_, text in calls if text}),
        },
        indent=1,
    )


async def test_a_write_cut_off_mid_flight_is_outcome_unknown_and_rows_agree(
    own_server: Any, database: str
) -> None:
    admin = await asyncpg.connect(own_server.dsn(database))
    await admin.execute("CREATE TABLE writes (id serial PRIMARY KEY, note text)")
    service = PostgresService()
    try:
        await service.put_link("app", own_server.link_config(database))
        insert = "INSERT INTO writes (note) VALUES ($1)"
        acknowledged = 0
        for n in range(3):
            result = await service.query("app", insert, [Case("text", f"ok {n}")])
            assert isinstance(result, Ok), result
            acknowledged += 1
        slow_write = asyncio.create_task(
            service.query("app", "INSERT INTO writes (note) SELECT 'cut' FROM pg_sleep(1)", [])
        )
        slow_read = asyncio.create_task(service.query("app", "SELECT pg_sleep(1)", []))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        with packet_drop.dropped(own_server.port):
            write, read = await asyncio.gather(slow_write, slow_read)
            answered_after = time.monotonic() - started
        assert answered_after < CALL_BOUND
        assert not isinstance(write, Ok) and not isinstance(read, Ok)
        assert write.value.tag == "unexpected" and read.value.tag == "unexpected"
        assert "stopped answering" in write.value.value, write
        assert "outcome is unknown" in write.value.value, write
        assert "stopped answering" in read.value.value, read
        assert "outcome" not in read.value.value, read
        rows = await until(
            lambda: _rows(service), "the link answers again after the network healed"
        )
        assert acknowledged <= rows <= acknowledged + 1  # the cut-off write may have committed
        assert rows == await admin.fetchval("SELECT count(*) FROM writes")
    finally:
        await service.close()
        await admin.close()


async def _rows(service: Any) -> int | None:
    result = await service.query("app", "SELECT count(*)::int4 FROM writes", [])
    if not isinstance(result, Ok):
        return None
    count: int = result.value[0][0]["value"].value
    return count


NATS_NOTICED_BOUND = 3 * PING_INTERVAL + 1  # two PINGs unanswered, the third interval ends it


async def test_a_silent_nats_server_is_noticed_by_missing_pongs_and_calls_resume(
    own_server: Any, database: str
) -> None:
    """The lattice's NATS server goes silent for longer than the PING bound: the provider's
    data connection and its lattice connection both notice, reconnect when the network heals,
    and calls are answered again; the provider never exits."""
    with running_nats(own=True) as url:
        port = int(url.rsplit(":", 1)[1])
        provider = RunningProvider(url)
        await provider.astart()
        nc = await nats.connect(
            url, ping_interval=1, max_outstanding_pings=2, reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
        )  # fmt: skip
        client = WrpcClient(nc, provider.host.prefix, result_timeout=3)
        await client.start()
        try:
            caller = await linked_caller(provider, nc, client, own_server.link_config(database))
            assert isinstance(await caller.query("SELECT 1"), Ok)
            started = time.monotonic()
            with packet_drop.dropped(port):
                await until(
                    lambda: "stopped answering PINGs" in provider.log_text(),
                    "the data connection notices the silence",
                    seconds=NATS_NOTICED_BOUND,
                )
                noticed = time.monotonic() - started
                await until(
                    lambda: "lattice connection lost" in provider.log_text(),
                    "the lattice connection notices the silence",
                    seconds=NATS_NOTICED_BOUND + 2,
                )
            healed = time.monotonic()

            async def answered() -> bool:
                try:  # a call lost while the connections come back: ask again
                    return isinstance(await asyncio.wait_for(caller.query("SELECT 1"), 1), Ok)
                except (CallTimeout, TimeoutError):
                    return False

            await until(answered, "calls answered after the network healed", seconds=20)
            recovery = time.monotonic() - healed
            assert recovery < 10, recovery
            assert provider.process.process is not None
            assert provider.process.process.poll() is None, provider.log_text()[-2000:]
            print(
                json.dumps({"nats_noticed_s": round(noticed, 1), "recovery_s": round(recovery, 1)})
            )
        finally:
            await client.close()
            await nc.close()
            provider.stop()


async def test_a_hung_server_s_statement_is_dropped_past_the_statement_timeout(
    postgres_server: Any, make_database: Any
) -> None:
    """The backend stops (SIGSTOP) mid-statement: the kernel still acknowledges everything, so
    TCP notices nothing and PostgreSQL's statement timeout cannot fire. The provider drops the
    connection once the statement is POSTGRES_STATEMENT_TIMEOUT plus 5 s late."""
    capabilities.require(
        "restart", postgres_server.kind != "configured", "needs a server this run started"
    )
    database = make_database()
    service = PostgresService()
    config = {
        **postgres_server.link_config(database),
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_STATEMENT_TIMEOUT": "1",
    }
    try:
        await service.put_link("app", config)
        await service.query_batch("app", "CREATE TABLE hung (n int)")
        pid_rows = await service.query("app", "SELECT pg_backend_pid()", [])
        pid = pid_rows.value[0][0]["value"].value
        write = asyncio.create_task(
            service.query("app", "INSERT INTO hung SELECT 1 FROM pg_sleep(0.5)", [])
        )
        await asyncio.sleep(0.2)
        started = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            result = await asyncio.wait_for(write, 30)
            elapsed = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert not isinstance(result, Ok) and result.value.tag == "unexpected"
        assert "did not answer within 6 s" in result.value.value, result
        assert "outcome is unknown" in result.value.value, result
        assert 5 < elapsed < 1 + 5 + 1 + 1.5, elapsed  # timeout, margin, the once-a-second look
        after = await service.query("app", "SELECT count(*)::int4 FROM hung", [])
        assert isinstance(after, Ok) and after.value[0][0]["value"].value in (0, 1), after
    finally:
        await service.close()
