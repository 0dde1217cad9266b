"""Replicas share one queue group; a token prepared on one replica works on another."""

from __future__ import annotations

import asyncio
from typing import Any

import nats

from devkit.provider_harness import Caller, RunningProvider, values_of, wait_linked
from host_shim.provider_process import ProviderProcess
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient


async def test_a_token_survives_the_replica_that_prepared_it(
    nats_url: str, postgres_server: Any, database: str
) -> None:
    first = RunningProvider(nats_url)
    await first.astart()
    config = postgres_server.link_config(database)
    definition = first.host.link_definition("app-replicated", config)
    second_log = open(first.log_path.with_suffix(".second.log"), "wb")  # noqa: SIM115
    # Another host's replica, started as hosts start providers: the links come in HostData.
    second = ProviderProcess(
        first.host, log_file=second_log, host_id="NSECOND", link_definitions=[definition]
    )
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, first.host.prefix, result_timeout=30)
    await client.start()
    try:
        await first.host.put_link(nc, definition)
        caller = Caller(client, "app-replicated")
        await wait_linked(caller)
        token = (await caller.prepare("SELECT $1::int4 * 2")).value

        second.start()  # started after the prepare: it never saw it
        await second.wait_healthy(nc)
        await asyncio.sleep(0.5)  # the first replica answered that health check: let it start
        assert await first.host.shutdown(nc) == b"shutting down"  # only the first host's
        assert first.process.wait_exit() == 0

        await wait_linked(caller)  # served by the second replica now
        assert isinstance(await caller.query("SELECT 1"), Ok)
        assert await caller.exec(token, [Case("int4", 21)]) == Ok(1)
        doubled = await caller.query("SELECT $1::int4 * 2", [Case("int4", 21)])
        assert values_of(doubled.value) == [[Case("int4", 42)]]

        # Still scoped to the link that prepared it.
        await first.host.put_link(nc, first.host.link_definition("app-other", config))
        other = Caller(client, "app-other")
        await wait_linked(other)
        assert await other.exec(token, [Case("int4", 1)]) == Err(Case("unknown-prepared-query"))

        # A link delete forgets its tokens on every replica.
        await first.host.delete_link(nc, "app-replicated")
        await asyncio.sleep(0.3)
        await first.host.put_link(nc, first.host.link_definition("app-replicated", config))
        await wait_linked(caller)
        assert await caller.exec(token, [Case("int4", 1)]) == Err(Case("unknown-prepared-query"))
    finally:
        await client.close()
        await nc.close()
        first.stop()
        second.kill()
        second_log.close()
