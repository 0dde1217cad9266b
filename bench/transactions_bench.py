"""The cost of a forwarded transaction call: two replicas, one transaction, sequential calls.

A call on a transaction reaches, through the shared queue group, the replica holding its
connection (served there) or the other one (forwarded to the owner's own subject and relayed).
Sent straight to the owner's subject, every call is served locally; sent to the shared subject,
about half are forwarded. So forwarded = 2 * shared - direct (roughly), per call.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import running_postgres
from devkit.provider_harness import Caller, RunningProvider, wait_linked
from host_shim.provider_process import ProviderProcess
from provider.lattice.replicas import replica_prefix
from provider.wit.values import Ok
from provider.wrpc.client import WrpcClient

CALLS = 1000


async def timed(caller: Caller, tx: str) -> float:
    latencies = []
    for _ in range(CALLS):
        started = time.perf_counter()
        result = await caller.tx_query(tx, "SELECT 1")
        latencies.append(time.perf_counter() - started)
        assert isinstance(result, Ok), result
    return statistics.mean(latencies) * 1000


async def bench(nats_url: str, server: Any) -> None:
    database = await server.create_database("txbench")
    first = RunningProvider(nats_url)
    await first.astart()
    definition = first.host.link_definition("bench-tx", server.link_config(database))
    second = ProviderProcess(first.host, host_id="NSECOND", link_definitions=[definition])
    nc = await nats.connect(nats_url)
    try:
        await first.host.put_link(nc, definition)
        second.start()
        await second.wait_healthy(nc)
        await asyncio.sleep(1.0)  # both replicas subscribed
        shared = WrpcClient(nc, first.host.prefix)
        await shared.start()
        caller = Caller(shared, "bench-tx")
        await wait_linked(caller)
        tx = (await caller.begin()).value
        owner = tx.split("_")[1]
        direct_client = WrpcClient(nc, replica_prefix(first.host.prefix, owner))
        await direct_client.start()
        direct = Caller(direct_client, "bench-tx")
        for _ in range(50):  # warm up both paths
            await direct.tx_query(tx, "SELECT 1")
            await caller.tx_query(tx, "SELECT 1")
        direct_ms = await timed(direct, tx)
        shared_ms = await timed(caller, tx)
        forwarded_ms = 2 * shared_ms - direct_ms
        print(f"{CALLS} sequential transaction calls (SELECT 1), mean per call:")
        print(f"  to the owner's own subject (never forwarded)   {direct_ms:.3f} ms")
        print(f"  to the shared subject (about half forwarded)   {shared_ms:.3f} ms")
        print(f"  a forwarded call, estimated                    {forwarded_ms:.3f} ms "
              f"(+{forwarded_ms - direct_ms:.3f} ms)")  # fmt: skip
        await caller.rollback(tx)
    finally:
        second.kill()
        first.stop()
        await nc.close()


def main() -> int:
    with running_nats() as nats_url, running_postgres() as server:
        asyncio.run(bench(nats_url, server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
