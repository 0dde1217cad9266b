"""Prepared statements never break: the seed's load, under backend kills, session resets,
a server restart and DDL; tokens isolated, bounded, forgotten, and evictions deallocated."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest

from devkit import chaos
from devkit.local_nats import free_port
from devkit.local_postgres import running_postgres
from devkit.provider_harness import Caller, RunningProvider, values_of, wait_linked
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from tests import capabilities

CALLERS = 64
EXECS = int(os.environ.get("CHAOS_EXECS", "25"))  # per caller; `make chaos` runs thousands


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[Any]:
    """A server of this module's own: it gets restarted."""
    with running_postgres(own=True) as server:
        yield server


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def provider(nats_url: str, metrics_port: int) -> Iterator[RunningProvider]:
    running = RunningProvider(nats_url)
    running.process.host_data = running.host.host_data(config={"METRICS_PORT": str(metrics_port)})
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def setup(
    nats_url: str, provider: RunningProvider, own_postgres: Any
) -> AsyncIterator[tuple[Caller, str, str]]:
    """A fresh database and a link to it with a pool of 4; (caller, admin dsn, database)."""
    import uuid

    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=60)
    await client.start()
    link = f"app-chaos-{uuid.uuid4().hex[:6]}"
    yield await chaos.link_fresh_database(provider, own_postgres, client, nc, link)
    await client.close()
    await nc.close()


def assert_no_pooling_errors(outcome: chaos.Outcome) -> None:
    for text in outcome.errors:
        assert "does not exist" not in text, outcome.error_lines()
        assert "cached plan" not in text, outcome.error_lines()


async def test_seed_scenario_has_zero_errors(setup: tuple[Caller, str, str]) -> None:
    caller, admin_dsn, _ = setup
    outcome = chaos.Outcome()
    await chaos.hammer(caller, CALLERS, EXECS, outcome)
    assert outcome.errors == {}, outcome.error_lines()
    assert len(outcome.acknowledged) == CALLERS * EXECS
    assert await chaos.stored_rows(admin_dsn) == outcome.acknowledged


async def test_under_backend_kills_acknowledged_inserts_are_kept(
    setup: tuple[Caller, str, str],
) -> None:
    caller, admin_dsn, database = setup
    outcome = chaos.Outcome()
    stop = asyncio.Event()
    killer = asyncio.create_task(chaos.kill_backends(admin_dsn, database, outcome, stop))
    await chaos.hammer(caller, CALLERS, EXECS * 2, outcome)
    stop.set()
    await killer
    assert outcome.kills > 0
    assert_no_pooling_errors(outcome)
    # The only error a write may get: its connection died after it was sent.
    for text in outcome.errors:
        assert "outcome is unknown" in text, outcome.error_lines()
    stored = await chaos.stored_rows(admin_dsn)
    assert outcome.acknowledged <= stored  # nothing acknowledged is lost
    unknown = sum(outcome.errors.values())
    assert len(stored) - len(outcome.acknowledged) <= unknown  # extra rows only from unknowns


async def test_session_resets_in_any_wording_are_invisible(
    setup: tuple[Caller, str, str], metrics_port: int
) -> None:
    caller, admin_dsn, _ = setup
    outcome = chaos.Outcome()
    stop = asyncio.Event()
    resetter = asyncio.create_task(chaos.reset_sessions(caller, outcome, stop))
    await chaos.hammer(caller, CALLERS, EXECS, outcome)
    stop.set()
    await resetter
    assert outcome.resets > 0
    assert outcome.errors == {}, outcome.error_lines()
    assert await chaos.stored_rows(admin_dsn) == outcome.acknowledged
    # The same for `query`, whose statements are cached too, and for a reset that does not
    # come through query-batch at all.
    for reset in ("DEALLOCATE ALL", "DISCARD ALL"):
        assert await caller.batch(reset) == Ok()
        for _ in range(8):
            assert isinstance(await caller.query("SELECT count(*) FROM chaos"), Ok)
        assert isinstance(await caller.query(reset), Ok)
        for _ in range(8):
            assert isinstance(await caller.query("SELECT count(*) FROM chaos"), Ok)
    samples = chaos.scrape(metrics_port)
    assert chaos.by_cause(samples, caller.source_id).get("does_not_exist", 0) > 0


async def test_across_a_server_restart(setup: tuple[Caller, str, str], own_postgres: Any) -> None:
    capabilities.require(
        "restart",
        own_postgres.restart is not None,
        f"the {own_postgres.kind} PostgreSQL here cannot be restarted by the tests",
    )
    caller, admin_dsn, _ = setup
    outcome = chaos.Outcome()
    restarter = asyncio.create_task(chaos.restart_server(own_postgres, outcome, after=0.2))
    await chaos.hammer(caller, CALLERS, EXECS * 2, outcome)
    await restarter
    assert outcome.restarts == 1
    assert_no_pooling_errors(outcome)
    for text in outcome.errors:
        assert "outcome is unknown" in text, outcome.error_lines()
    stored = await chaos.stored_rows(admin_dsn)
    assert outcome.acknowledged <= stored
    # After the restart everything works again, with the tokens prepared before it.
    token = (await caller.prepare(chaos.INSERT)).value
    assert await caller.exec(token, [Case("int4", -1), Case("int4", 0)]) == Ok(1)


async def test_ddl_that_changes_a_result_type(setup: tuple[Caller, str, str]) -> None:
    caller, _, _ = setup
    assert (
        await caller.batch("CREATE TABLE shapes (id int4); INSERT INTO shapes VALUES (1)") == Ok()
    )
    token = (await caller.prepare("SELECT * FROM shapes")).value
    for _ in range(4):  # cache it on every connection of the pool
        assert await caller.exec(token) == Ok(1)
        assert values_of((await caller.query("SELECT * FROM shapes")).value) == [[Case("int4", 1)]]
    assert await caller.batch("ALTER TABLE shapes ADD COLUMN label text DEFAULT 'x'") == Ok()
    results = await asyncio.gather(*(caller.exec(token) for _ in range(8)))
    assert results == [Ok(1)] * 8
    rows = await asyncio.gather(*(caller.query("SELECT * FROM shapes") for _ in range(8)))
    assert all(values_of(r.value) == [[Case("int4", 1), Case("text", "x")]] for r in rows)


async def test_registry_bound_and_connection_evictions_deallocate(
    nats_url: str, provider: RunningProvider, own_postgres: Any, metrics_port: int
) -> None:
    import uuid

    database = await own_postgres.create_database("evict")
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await client.start()
    try:
        source_id = f"app-evict-{uuid.uuid4().hex[:6]}"
        config = {
            **own_postgres.link_config(database),
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_STATEMENTS": "3",
            "POSTGRES_STATEMENTS_PER_CONNECTION": "4",
        }
        await provider.host.put_link(nc, provider.host.link_definition(source_id, config))
        caller = Caller(client, source_id)
        await wait_linked(caller)
        tokens = [(await caller.prepare(f"SELECT {i}::int4")).value for i in range(5)]
        assert await caller.exec(tokens[0]) == Err(Case("unknown-prepared-query"))  # evicted
        assert await caller.exec(tokens[4]) == Ok(1)
        for i in range(10):
            assert isinstance(await caller.query(f"SELECT {i} + 100"), Ok)
        counted = await caller.query("SELECT count(*)::int4 FROM pg_prepared_statements")
        (value,) = values_of(counted.value)[0]
        assert value.tag == "int4" and 1 <= value.value <= 4  # the one connection's bound
        samples = chaos.scrape(metrics_port)
        evictions = chaos.sample(
            samples, "sqldb_postgres_statement_evictions_total", link=source_id, level="connection"
        )
        assert evictions >= 10
        assert chaos.sample(samples, "sqldb_postgres_pool_size", link=source_id) == 1
        registry_evictions = chaos.sample(
            samples, "sqldb_postgres_statement_evictions_total", link=source_id, level="link"
        )
        assert registry_evictions == 2
        health = await provider.host.health(nc)
        assert f"{source_id}: pool" in health["message"] and "3 statements" in health["message"]
    finally:
        await client.close()
        await nc.close()
