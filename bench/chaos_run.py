"""`make chaos`: the long chaos run, all faults at once, and its report.

64 callers each prepare an INSERT once and exec it thousands of times through the provider
(pool of 4) while a background task kills a random backend every 100-200 ms, the same guest
resets its sessions through query-batch (DISCARD ALL / DEALLOCATE ALL / DISCARD PLANS), and the
PostgreSQL server is restarted twice. Afterwards every acknowledged insert is looked up in the
table, and the provider's own metrics give the re-prepares by cause.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import nats

from devkit import chaos
from devkit.local_nats import free_port, running_nats
from devkit.local_postgres import running_postgres
from devkit.provider_harness import RunningProvider
from provider.wrpc.client import WrpcClient

CALLERS = 64
EXECS = int(os.environ.get("CHAOS_EXECS", "2000"))


async def run(nats_url: str, server: Any) -> int:
    port = free_port()
    provider = RunningProvider(nats_url)
    provider.process.host_data = provider.host.host_data(config={"METRICS_PORT": str(port)})
    await provider.astart()
    nc = await nats.connect(nats_url)
    client = WrpcClient(nc, provider.host.prefix, result_timeout=120)
    await client.start()
    link = "app-chaos-long"
    caller, admin_dsn, database = await chaos.link_fresh_database(
        provider, server, client, nc, link
    )

    print(f"{CALLERS} callers x {EXECS} execs, pool 4, kills + resets + restarts ...", flush=True)
    outcome = chaos.Outcome()
    stop = asyncio.Event()
    faults = [
        asyncio.create_task(chaos.kill_backends(admin_dsn, database, outcome, stop)),
        asyncio.create_task(chaos.reset_sessions(caller, outcome, stop)),
    ]

    async def restarts() -> None:
        if server.restart is None:
            print("  (this PostgreSQL cannot be restarted here: no restarts)")
            return
        for delay in (5.0, 15.0):
            await chaos.restart_server(server, outcome, after=delay)
            print(f"  restarted PostgreSQL ({outcome.restarts})", flush=True)

    async def progress() -> None:
        while not stop.is_set():
            await asyncio.sleep(5)
            errors = sum(outcome.errors.values())
            print(f"  {outcome.operations} operations, {outcome.kills} kills, "
                  f"{outcome.resets} resets, {errors} errors", flush=True)  # fmt: skip

    faults += [asyncio.create_task(restarts()), asyncio.create_task(progress())]
    await chaos.hammer(caller, CALLERS, EXECS, outcome)
    stop.set()
    await asyncio.gather(*faults, return_exceptions=True)

    stored = await chaos.stored_rows(admin_dsn)
    lost = outcome.acknowledged - stored
    samples = chaos.scrape(port)
    prepares = chaos.by_cause(samples, link)
    retries = {
        reason: int(chaos.sample(samples, "sqldb_postgres_retries_total", link=link, reason=reason))
        for reason in ("stale", "plan_changed", "not_sent", "lost")
    }
    print("\nreport")
    print(f"  operations        {outcome.operations} in {outcome.seconds:.1f} s "
          f"({outcome.operations / outcome.seconds:.0f}/s)")  # fmt: skip
    print(f"  faults            {outcome.kills} backend kills, {outcome.resets} session resets, "
          f"{outcome.restarts} restarts")  # fmt: skip
    print(
        f"  acknowledged      {len(outcome.acknowledged)}; stored {len(stored)}; lost {len(lost)}"
    )
    print(f"  errors            {sum(outcome.errors.values())}")
    for line in outcome.error_lines()[:10]:
        print(f"    {line}")
    print(f"  prepares by cause {prepares}")
    print(f"  retries           {retries}")
    does_not_exist = sum(n for text, n in outcome.errors.items() if "does not exist" in text)
    print(f"  'does not exist'  {does_not_exist}")
    await client.close()
    await nc.close()
    provider.stop()
    return 1 if lost or does_not_exist else 0


def main() -> int:
    with running_nats() as nats_url, running_postgres(own=True) as server:
        return asyncio.run(run(nats_url, server))


if __name__ == "__main__":
    sys.exit(main())
