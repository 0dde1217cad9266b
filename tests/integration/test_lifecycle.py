"""Start-up from HostData and shutdown inside the host's 300 ms window, as a host drives them."""

from __future__ import annotations

import asyncio
from typing import Any

import nats

from devkit.provider_harness import Caller, RunningProvider, values_of
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient


async def test_initial_links_from_host_data_and_shutdown_with_calls_in_flight(
    nats_url: str, postgres_server: Any, database: str
) -> None:
    running = RunningProvider(nats_url)
    config = postgres_server.link_config(database)
    definition = running.host.link_definition("app-initial", config)
    running.process.host_data = running.host.host_data(link_definitions=[definition])
    await running.astart()
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, running.host.prefix, result_timeout=10)
    await client.start()
    try:
        caller = Caller(client, "app-initial")
        # The link came with HostData: no put was published.
        assert values_of((await caller.query("SELECT 3::int4")).value) == [[Case("int4", 3)]]

        quick = [asyncio.create_task(caller.query("SELECT pg_sleep(0.02)")) for _ in range(8)]
        slow = asyncio.create_task(caller.query("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.1)  # all of them are in flight now

        # Another host's shutdown request is ignored.
        await nc.publish(running.host.subject(running.host.provider_id, "default.shutdown"),
                         b'{"host_id": "some-other-host"}')  # fmt: skip
        # The request times out after the host's 300 ms window, as the host's own does.
        reply = await running.host.shutdown(nc)
        assert reply == b"shutting down"

        # None lost: every call got an answer.
        for task in quick:
            assert isinstance(await asyncio.wait_for(task, 5), Ok)
        slow_result = await asyncio.wait_for(slow, 5)
        assert slow_result == Err(Case("unexpected", "the provider is shutting down"))
        assert running.process.wait_exit(timeout=5) == 0
    finally:
        await client.close()
        await nc.close()
        running.stop()
