"""Smoke check of the lattice harness (run by hand, not by pytest):

    .venv/bin/python tests/lattice/smoke.py

Builds (or finds) the harness with build.py, starts a JetStream nats-server (devkit.local_nats),
then the real host, wadm and the secrets backend on it: pings the host over the control interface,
lists wadm's models, puts a secret and a mapping, checks that everything stays up, stops it all
with SIGTERM and expects exit 0 and a `host_stopped` event. Prints `smoke: OK` at the end.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repo root, for host_shim
from devkit.local_nats import running_nats  # noqa: E402
from tests.lattice.real_lattice import Child, build_harness, run  # noqa: E402

LATTICE = "smoke"
STAY_UP_SECONDS = 4


async def main() -> None:
    harness = build_harness()
    print(f"smoke: harness {harness}")
    host_key = json.loads(run([harness, "keys", "server"]))
    encryption, transit = (json.loads(run([harness, "keys", "curve"])) for _ in range(2))
    with running_nats() as url, tempfile.TemporaryDirectory(prefix="lattice-smoke-") as tmp:
        logs = Path(tmp)
        nc = await nats.connect(url)
        events: list[dict[str, Any]] = []

        async def on_event(msg: Any) -> None:
            events.append(json.loads(msg.data))

        await nc.subscribe(f"wasmbus.evt.{LATTICE}.>", cb=on_event)
        await nc.flush()  # the SUB must reach the server before the host starts
        children: list[Child] = []
        try:
            started = time.monotonic()
            argv = [harness, "host", "--nats-url", url, "-x", LATTICE, "--allow-file-load"]
            argv += ["--host-seed", host_key["seed"], "--secrets-topic", "wasmcloud.secrets"]
            host = Child("host", argv, logs)
            children.append(host)
            line = await asyncio.to_thread(host.wait_line, "host started ", 90)
            host_id = line.split()[-1]
            print(f"smoke: {line!r} after {time.monotonic() - started:.2f} s")
            assert host_id == host_key["public"], (host_id, host_key["public"])

            reply = await nc.request(f"wasmbus.ctl.v1.{LATTICE}.host.ping", b"", timeout=5)
            ping = json.loads(reply.data)
            print(f"smoke: host.ping -> {json.dumps(ping)}")
            assert ping["success"] and ping["response"]["id"] == host_id, ping
            assert ping["response"]["version"] == "1.9.2" and ping["response"]["lattice"] == LATTICE

            wadm = Child("wadm", [harness, "wadm", "-s", url], logs)
            children.append(wadm)
            await asyncio.to_thread(wadm.wait_line, "wadm started", 60)
            reply = await nc.request(f"wadm.api.{LATTICE}.model.get", b"", timeout=5)
            print(f"smoke: wadm model.get -> {reply.data.decode()}")
            assert json.loads(reply.data)["result"] == "success", reply.data

            secrets_cli = [harness, "secrets"]
            nats_flag = ["--nats-address", url]
            argv = [*secrets_cli, "run", "-e", encryption["seed"], "-t", transit["seed"]]
            secrets = Child("secrets", argv + nats_flag, logs)
            children.append(secrets)
            line = await asyncio.to_thread(secrets.wait_line, "secrets started ", 60)
            print(f"smoke: {line!r}")
            assert line.split()[-1] == transit["public"], line
            put = ["put", "smoke_secret", "-t", transit["seed"], "--string", "hello"]
            print("smoke: " + run(secrets_cli + put + nats_flag).strip())
            mapping = ["add-mapping", host_id, "--secret", "smoke_secret"]
            print("smoke: " + run(secrets_cli + mapping + nats_flag).strip())

            await asyncio.sleep(STAY_UP_SECONDS)
            for child in children:
                if child.proc.poll() is not None:
                    child.fail(f"exited ({child.proc.returncode}) while it should stay up")
            print(f"smoke: host, wadm and secrets still up after {STAY_UP_SECONDS} s")
        finally:
            codes = {child.name: child.stop() for child in reversed(children)}
            await nc.flush()
            await asyncio.sleep(0.5)
            await nc.close()
        print(f"smoke: exit codes after SIGTERM {codes}")
        assert all(code == 0 for code in codes.values()), codes
        kinds = [e.get("type", "").rsplit(".", 1)[-1] for e in events]
        print(f"smoke: host events {kinds}")
        assert "host_started" in kinds and "host_stopped" in kinds, kinds
    print("smoke: OK")


if __name__ == "__main__":
    asyncio.run(main())
