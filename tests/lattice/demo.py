"""`make demo-lattice`: `make demo`'s deployment on the real thing.

NATS with JetStream, PostgreSQL requiring a password, the secrets-nats-kv backend, wasmCloud's
1.9.2 host and wadm 0.21.1 (this folder's harness, built from crates.io the first time:
12-25 min on 2 cores, seconds after); `wadm.yaml` deployed through wadm with its password from
the backend; the example component's `run()` and `transfer()` called through the host.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import running_postgres
from tests.lattice.real_lattice import (
    EXAMPLE_ID,
    TRANSFER,
    build_harness,
    call_export,
    deploy_example,
    run_example,
    running_lattice,
)


async def demo(nats_url: str, server: Any, harness: str) -> None:
    database = await server.create_database("demo")
    with running_lattice(harness, nats_url) as lattice:
        print(f"==> lattice {lattice.name}: host {lattice.host_id[:12]}…, wadm, secrets backend "
              f"(logs in {lattice.logdir})")  # fmt: skip
        nc = await nats.connect(nats_url)
        try:
            print("==> wadm.yaml through wadm, POSTGRES_PASSWORD only in the secrets backend")
            took = await deploy_example(nc, lattice, server.port, database, server.password)
            print(f"    deployed in {took:.1f} s")
            started = time.monotonic()
            summary = await run_example(nc, lattice, started + 60)
            print(f"==> run() through the host ({time.monotonic() - started:.2f} s):")
            print(json.dumps(summary, indent=2, sort_keys=True))
            for amount in (30, 1000):
                outcome = await call_export(nc, lattice.name, EXAMPLE_ID, TRANSFER, [1, 2, amount])
                print(f"==> transfer(1, 2, {amount}): {outcome}")
        finally:
            await nc.close()
    print("==> stopped: wadm, the host (and with it the provider), the secrets backend")


def main() -> None:
    print("==> building (or finding) the lattice harness: the first build takes 12-25 min")
    harness = build_harness()
    with running_nats() as nats_url, running_postgres() as server:
        asyncio.run(demo(nats_url, server, harness))


if __name__ == "__main__":
    main()
