"""The real wasmCloud 1.9 lattice for tests: the harness's processes and the control interface.

`lattice-harness` (this folder's crate, built by build.py into a cache outside the clone) runs
the 1.9.2 host, wadm 0.21.1 and the secrets-nats-kv backend. This module starts them as child
processes, speaks the host's control interface (`wasmbus.ctl.v1.<lattice>.…`, JSON envelopes),
collects the lattice's events, and calls component exports and the provider over wRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from provider.wit.model import Function, Primitive
from provider.wrpc.client import WrpcClient

HERE = Path(__file__).resolve().parent


def build_harness() -> str:
    """build.py prints cargo's progress on stderr and the JSON result as its last stdout line
    (seconds when cached; the first build takes 12-25 min on 2 cores)."""
    done = subprocess.run([sys.executable, str(HERE / "build.py")], stdout=subprocess.PIPE,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tests/lattice/build.py failed ({done.returncode})")
    return str(json.loads(done.stdout.strip().splitlines()[-1])["harness"])


class Child:
    """A harness subcommand: stdout lines on a queue, stderr to a log file."""

    def __init__(self, name: str, argv: list[str], logdir: Path) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        self.lines: queue.Queue[str] = queue.Queue()
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    self.fail(f"exited ({self.proc.returncode}) before printing {prefix!r}")
                continue
            if line.startswith(prefix):
                return line
        self.fail(f"printed no {prefix!r} line within {timeout} s")

    def fail(self, why: str) -> NoReturn:
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} {why}\n--- {self.log} (tail) ---\n{tail}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[1:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (a provider's bootloader and its Python child)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Events:
    """The lattice's CloudEvents (`wasmbus.evt.<lattice>.>`), with their arrival times."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, dict[str, Any]]] = []

    async def subscribe(self, nc: Any, lattice: str) -> None:
        async def on_event(msg: Any) -> None:
            event = json.loads(msg.data)
            kind = str(event.get("type", "")).rsplit(".", 1)[-1]
            self.seen.append((time.monotonic(), kind, event.get("data") or {}))

        await nc.subscribe(f"wasmbus.evt.{lattice}.>", cb=on_event)
        await nc.flush()

    async def wait(
        self, kind: str, match: Callable[[dict[str, Any]], bool], timeout: float, since: float = 0
    ) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, seen_kind, data in self.seen:
                if at >= since and seen_kind == kind and match(data):
                    return at, data
            await asyncio.sleep(0.02)
        kinds = [k for _, k, _ in self.seen]
        raise TimeoutError(f"no {kind} event within {timeout} s (seen: {kinds[-20:]})")


class ControlInterface:
    """The host's control interface v1 (replies are `{"success", "message", "response"}`)."""

    def __init__(self, nc: Any, lattice: str, host_id: str) -> None:
        self.nc, self.lattice, self.host_id = nc, lattice, host_id

    async def request(self, operation: str, body: Any = None, timeout: float = 10) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        reply = await self.nc.request(f"wasmbus.ctl.v1.{self.lattice}.{operation}", data,
                                      timeout=timeout)  # fmt: skip
        document = json.loads(reply.data)
        if not document.get("success"):
            raise RuntimeError(f"{operation}: {document.get('message')}")
        return document.get("response")

    async def put_config(self, name: str, values: dict[str, str]) -> None:
        await self.request(f"config.put.{name}", values)

    async def start_provider(self, provider_id: str, par: Path) -> None:
        body = {"provider_id": provider_id, "provider_ref": par.resolve().as_uri(),
                "host_id": self.host_id, "config": []}  # fmt: skip
        await self.request(f"provider.start.{self.host_id}", body)

    async def stop_provider(self, provider_id: str) -> None:
        body = {"host_id": self.host_id, "provider_id": provider_id}
        await self.request(f"provider.stop.{self.host_id}", body, timeout=15)

    async def put_link(self, source_id: str, target: str, target_config: list[str]) -> None:
        await self.request("link.put", {
            "source_id": source_id, "target": target, "name": "default",
            "wit_namespace": "wasmcloud", "wit_package": "postgres",
            "interfaces": ["query", "prepared", "transactions"],
            "source_config": [], "target_config": target_config,
        })  # fmt: skip

    async def delete_link(self, source_id: str) -> None:
        await self.request("link.del", {"source_id": source_id, "name": "default",
                                        "wit_namespace": "wasmcloud",
                                        "wit_package": "postgres"})  # fmt: skip


def root_export(name: str, params: tuple[tuple[str, str], ...] = ()) -> Function:
    """A world's root export returning a string (the example's `run`, `transfer`)."""
    typed = tuple((param, Primitive(kind)) for param, kind in params)
    return Function("", name, typed, (Primitive("string"),))


async def call_export(nc: Any, lattice: str, component_id: str, function: Function,
                      args: list[Any], timeout: float = 30) -> Any:  # fmt: skip
    """Call a component's export over wRPC, as `wash call` does (no link needed)."""
    client = WrpcClient(nc, f"{lattice}.{component_id}", result_timeout=timeout)
    await client.start()
    try:
        (result,) = await client.call(function, args, {"source-id": "lattice-test"})
    finally:
        await client.close()
    return result


ROOT = HERE.parents[1]
PAR = ROOT / "build" / "sqldb-postgres.par"
COMPONENT = ROOT / "components" / "example" / "build" / "example.wasm"
EXAMPLE_ID = "sqldb_postgres_example-example"  # wadm's id for wadm.yaml's component


@dataclass
class Lattice:
    """A running lattice: the secrets backend, the host and wadm on one NATS."""

    nats_url: str
    name: str
    host_id: str
    harness: str
    transit_seed: str
    host: Child
    par_subject: str  # the archive's claims subject: what secrets are mapped to
    logdir: Path

    def put_secret(self, key: str, *value: str) -> None:
        run([self.harness, "secrets", "put", key, *value, "-t", self.transit_seed,
             "--nats-address", self.nats_url])  # fmt: skip

    def map_secret(self, key: str) -> None:
        """Allow the provider archive's subject (its claims' `sub`) to read `key`."""
        run([self.harness, "secrets", "add-mapping", self.par_subject, "--secret", key,
             "--nats-address", self.nats_url])  # fmt: skip


@contextlib.contextmanager
def running_lattice(harness: str, nats_url: str) -> Iterator[Lattice]:
    """The secrets backend, then the host (heartbeats every 5 s), then wadm: started after
    the host, wadm learns of it from its next heartbeat. (Started before, with the secrets
    backend up, wadm 0.21.1 was seen to stall on the host's `host_started` and never deploy.)"""
    name = f"lt{uuid.uuid4().hex[:10]}"
    host_key = json.loads(run([harness, "keys", "server"]))
    encryption, transit = (json.loads(run([harness, "keys", "curve"])) for _ in range(2))
    claims = json.loads(subprocess.run(
        [sys.executable, "-m", "provider_archive", "inspect", "--json", str(PAR)],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)  # fmt: skip
    logdir = Path(tempfile.mkdtemp(prefix="lattice-"))
    children: list[Child] = []
    try:
        backend = ["secrets", "run", "-e", encryption["seed"], "-t", transit["seed"]]
        secrets = Child("secrets", [harness, *backend, "--nats-address", nats_url], logdir)
        children.append(secrets)
        secrets.wait_line("secrets started ", 60)
        host = Child("host", [harness, "host", "--nats-url", nats_url, "-x", name,
                              "--allow-file-load", "--host-seed", host_key["seed"],
                              "--secrets-topic", "wasmcloud.secrets",
                              "--heartbeat-interval-seconds", "5"], logdir)  # fmt: skip
        children.append(host)
        host.wait_line("host started ", 90)
        wadm = Child("wadm", [harness, "wadm", "-s", nats_url], logdir)
        children.append(wadm)
        wadm.wait_line("wadm started", 60)
        yield Lattice(nats_url, name, host_key["public"], harness, transit["seed"], host,
                      claims["service"], logdir)  # fmt: skip
    finally:
        for child in reversed(children):
            child.stop()


def example_manifest(postgres_port: int, database: str) -> str:
    """wadm.yaml as `wash app deploy` sends it (absolute images), on the given database."""
    manifest = (ROOT / "wadm.yaml").read_text()
    manifest = manifest.replace("file://./components/example/build/example.wasm",
                                COMPONENT.resolve().as_uri())  # fmt: skip
    manifest = manifest.replace("file://./build/sqldb-postgres.par", PAR.resolve().as_uri())
    manifest = manifest.replace('POSTGRES_PORT: "5432"', f'POSTGRES_PORT: "{postgres_port}"')
    return manifest.replace("POSTGRES_DATABASE: postgres", f"POSTGRES_DATABASE: {database}")


async def deploy_example(
    nc: Any, lattice: Lattice, postgres_port: int, database: str, password: str
) -> float:
    """wadm.yaml through wadm, its password put in the secrets backend and mapped to the
    archive; returns the seconds from deploy to `deployed`."""
    lattice.put_secret("postgres-password", f"--string={password}")  # it may start with "-"
    lattice.map_secret("postgres-password")
    api = f"wadm.api.{lattice.name}.model"
    manifest = example_manifest(postgres_port, database).encode()
    put = json.loads((await nc.request(f"{api}.put", manifest, timeout=10)).data)
    if put.get("result") not in ("created", "newversion"):
        raise RuntimeError(f"wadm refused the manifest: {put}")
    reply = await nc.request(f"{api}.deploy.sqldb-postgres-example", b"", timeout=10)
    if json.loads(reply.data).get("result") != "acknowledged":
        raise RuntimeError(f"wadm did not deploy: {reply.data!r}")
    started = time.monotonic()
    status: Any = None
    while time.monotonic() - started < 120:
        reply = await nc.request(f"{api}.status.sqldb-postgres-example", b"", timeout=10)
        status = json.loads(reply.data)["status"]["status"]
        if status["type"] == "deployed":
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise TimeoutError(f"not deployed within 120 s: {status}")


async def run_example(nc: Any, lattice: Lattice, deadline: float) -> dict[str, Any]:
    """The example's `run()` through the host, once its link has arrived (before `deadline`)."""
    while True:
        summary: dict[str, Any] = json.loads(
            await call_export(nc, lattice.name, EXAMPLE_ID, root_export("run"), [])
        )
        if "no link" not in json.dumps(summary) or time.monotonic() > deadline:
            return summary
        await asyncio.sleep(0.5)


TRANSFER = root_export("transfer", (("from", "s32"), ("to", "s32"), ("amount", "s64")))
