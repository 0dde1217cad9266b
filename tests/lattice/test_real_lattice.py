"""The provider under wasmCloud's own 1.9.2 host, wadm 0.21.1 and secrets-nats-kv 0.2.0.

One lattice for the module (`make lattice-test`): NATS with JetStream, PostgreSQL requiring a
SCRAM password, the secrets backend, wadm, then the host. The provider is started from
`build/sqldb-postgres.par` as the host starts it. The host bounds only the publishing of a
component's call, so every wait here is bounded by the test itself.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest

from devkit.provider_harness import Caller
from provider.wit.values import Ok
from provider.wrpc.client import WrpcClient
from tests.lattice.real_lattice import (
    EXAMPLE_ID,
    PAR,
    TRANSFER,
    ControlInterface,
    Events,
    Lattice,
    alive,
    build_harness,
    call_export,
    deploy_example,
    descendants,
    run_example,
    running_lattice,
)

ROOT = Path(__file__).resolve().parents[2]
HEALTH_DEADLINE = 2.0  # the host's request timeout for health checks


@dataclass
class Module:
    """The module's lattice, its database, and the health replies its tests timed."""

    lattice: Lattice
    postgres: Any
    database: str
    health_replies: list[float] = field(default_factory=list)  # seconds, every check seen

    @property
    def name(self) -> str:
        return self.lattice.name


@pytest.fixture(scope="session")
def harness() -> str:
    return build_harness()


@pytest.fixture(scope="module")
def module(
    harness: str, nats_url: str, postgres_server: Any, make_database: Any
) -> Iterator[Module]:
    subprocess.run(["make", "--no-print-directory", "component", "par"], cwd=ROOT, check=True)
    if not postgres_server.password:
        pytest.fail("the real-lattice tests need a PostgreSQL that requires a password")
    with running_lattice(harness, nats_url) as lattice:
        print(f"\nreal lattice {lattice.name}: logs in {lattice.logdir}")
        yield Module(lattice, postgres_server, make_database())


@pytest.fixture
async def nc(module: Module) -> AsyncIterator[Any]:
    connection = await nats.connect(module.lattice.nats_url)
    yield connection
    await connection.close()


def _own_par(lattice: Lattice, provider_id: str) -> Path:
    """A copy of the archive for one provider id: the 1.9.2 host extracts a `file://` archive
    to a path derived from its reference on every start, and fails ("failed to fetch
    provider") while another provider started from the same file is running from there."""
    copy = lattice.logdir / f"{provider_id}.par"
    if not copy.exists():
        shutil.copyfile(PAR, copy)
    return copy


async def _control(lattice: Lattice, nc: Any) -> tuple[ControlInterface, Events]:
    events = Events()
    await events.subscribe(nc, lattice.name)
    return ControlInterface(nc, lattice.name, lattice.host_id), events


async def _answers(caller: Caller, deadline: float) -> Any:
    """The caller's first good answer to SELECT 1 before `deadline`, else its last answer."""
    result: Any = None
    while time.monotonic() < deadline:
        try:
            result = await caller.query("SELECT 1")
        except Exception as exc:  # no responders while the provider restarts
            result = exc
        if isinstance(result, Ok):
            return result
        await asyncio.sleep(0.1)
    return result


def _provider_processes(lattice: Lattice) -> set[int]:
    return {pid for pid in descendants(lattice.host.proc.pid) if alive(pid)}


async def _watch_health(module: Module, nc: Any, provider_id: str) -> None:
    """Time every health request the host sends the provider until its reply."""
    asked: dict[str, float] = {}

    async def on_request(msg: Any) -> None:
        if msg.reply:
            asked[msg.reply] = time.monotonic()

    async def on_reply(msg: Any) -> None:
        started = asked.pop(msg.subject, None)
        if started is not None:
            module.health_replies.append(time.monotonic() - started)

    await nc.subscribe(f"wasmbus.rpc.{module.name}.{provider_id}.health", cb=on_request)
    await nc.subscribe("_INBOX.>", cb=on_reply)
    await nc.flush()


async def test_wadm_deploys_the_manifest_with_its_secret_and_the_component_runs(
    module: Module, nc: Any
) -> None:
    """a. wadm.yaml through wadm, the password only in the secret; run() and transfer()."""
    lattice, postgres = module.lattice, module.postgres
    await _watch_health(module, nc, "sqldb_postgres_example-sqldb_postgres")
    took = await deploy_example(nc, lattice, postgres.port, module.database, postgres.password)
    print(f"deployed {took:.1f} s after deploy")
    summary = await run_example(nc, lattice, time.monotonic() + 60)
    assert summary["written"] == 20 and summary["updated"] == 5, summary
    assert summary["error"]["variant"] == "InvalidQuery", summary
    outcome = json.loads(await call_export(nc, lattice.name, EXAMPLE_ID, TRANSFER, [1, 2, 10]))
    assert outcome["committed"] is True, outcome
    refused = json.loads(await call_export(nc, lattice.name, EXAMPLE_ID, TRANSFER,
                                           [1, 2, 10**6]))  # fmt: skip
    assert refused["committed"] is False and "balance" in refused["reason"], refused


async def _sweep(
    control: ControlInterface, lattice: Lattice, nc: Any, provider_id: str, label: str,
    moment: float,
) -> None:  # fmt: skip
    """Links put every 100 ms from 0 to 3 s after `moment`, one source id each; then every
    one must answer."""
    sources = [f"{label}-{n:02d}" for n in range(31)]
    for n, source in enumerate(sources):
        await asyncio.sleep(max(0.0, moment + n * 0.1 - time.monotonic()))
        await control.put_link(source, provider_id, ["sweep-postgres"])
    client = WrpcClient(nc, f"{lattice.name}.{provider_id}", result_timeout=10)
    await client.start()
    try:
        deadline = time.monotonic() + 60
        results = [await _answers(Caller(client, source), deadline) for source in sources]
    finally:
        await client.close()
    unanswered = {s: r for s, r in zip(sources, results, strict=True) if not isinstance(r, Ok)}
    print(f"{label}: {len(sources)} puts, {len(sources) - len(unanswered)} answered")
    assert not unanswered, unanswered


async def _answers_again_after(lattice: Lattice, nc: Any, provider_id: str, since: float) -> float:
    # A call the kill caught is never answered: try again after 1 s, not the usual 10.
    prefix = f"{lattice.name}.{provider_id}"
    client = WrpcClient(nc, prefix, handshake_timeout=1, result_timeout=1)
    await client.start()
    try:
        answer = await _answers(Caller(client, "start-00"), time.monotonic() + 60)
    finally:
        await client.close()
    assert isinstance(answer, Ok), answer
    return time.monotonic() - since


async def test_links_put_while_the_provider_starts_or_restarts_are_never_lost(
    module: Module, nc: Any
) -> None:
    """b and c: the link-put sweep after provider.start and after a SIGKILL; restart timing;
    provider.stop ends every process of the provider within the host's grace."""
    lattice = module.lattice
    control, events = await _control(lattice, nc)
    provider_id = "sweep_provider"
    await control.put_config("sweep-postgres", module.postgres.link_config(module.database))
    await _watch_health(module, nc, provider_id)
    before = _provider_processes(lattice)
    started = time.monotonic()
    await control.start_provider(provider_id, _own_par(lattice, provider_id))
    await _sweep(control, lattice, nc, provider_id, "start", started)
    ours = _provider_processes(lattice) - before
    assert ours, "no provider process under the host"
    # SIGKILL: the host restarts it with its links in HostData; links put meanwhile too.
    killed_at = time.monotonic()
    for pid in ours:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    again, _ = await asyncio.gather(
        _answers_again_after(lattice, nc, provider_id, killed_at),
        _sweep(control, lattice, nc, provider_id, "restart", killed_at),
    )
    print(f"killed: answering again {again:.2f} s after the SIGKILL")
    # provider.stop: every process of the provider gone within the host's grace.
    now = _provider_processes(lattice) - before
    stop_started = time.monotonic()
    await control.stop_provider(provider_id)
    stop_replied = time.monotonic() - stop_started
    await asyncio.sleep(0.1)
    left = {pid for pid in now if alive(pid)}
    print(f"provider.stop answered after {stop_replied * 1000:.0f} ms; processes left: {left}")
    assert not left
    await events.wait("provider_stopped", lambda d: d.get("provider_id") == provider_id, 10)


async def test_a_secret_that_is_not_utf8_refuses_the_link_and_says_why(
    module: Module, nc: Any
) -> None:
    """e. A Bytes secret that is not UTF-8: the link is refused and the guest hears why."""
    lattice = module.lattice
    control, _ = await _control(lattice, nc)
    provider_id = "binary_secret_provider"
    binary = lattice.logdir / "not-utf8.bin"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    lattice.put_secret("binary-password", "--binary", str(binary))
    lattice.map_secret("binary-password")
    config = {k: v for k, v in module.postgres.link_config(module.database).items()
              if k != "POSTGRES_PASSWORD"}  # fmt: skip
    await control.put_config("binary-postgres", config)
    policy = json.dumps({"type": "properties.secret.wasmcloud.dev/v1alpha1", "properties": {}})
    await control.put_config("SECRET_binary_password", {
        "name": "POSTGRES_PASSWORD", "type": "secret.wasmcloud.dev/v1alpha1",
        "backend": "nats-kv", "key": "binary-password", "policy": policy,
    })  # fmt: skip
    await control.put_link("binary-source", provider_id,
                           ["binary-postgres", "SECRET_binary_password"])  # fmt: skip
    await control.start_provider(provider_id, _own_par(lattice, provider_id))
    client = WrpcClient(nc, f"{lattice.name}.{provider_id}", result_timeout=10)
    await client.start()
    try:
        deadline = time.monotonic() + 60
        result: Any = None
        while time.monotonic() < deadline:
            try:
                result = await Caller(client, "binary-source").query("SELECT 1")
            except Exception as exc:
                result = exc
            if "refused" in str(result):
                break
            await asyncio.sleep(0.3)
        assert "was refused: a Bytes secret is not UTF-8 text" in str(result), result
    finally:
        await client.close()
        await control.stop_provider(provider_id)


async def test_every_health_check_is_answered_well_inside_the_hosts_deadline(
    module: Module, nc: Any
) -> None:
    """d. Health checks seen over the module's run (and at least 60 s of a provider's life)."""
    lattice = module.lattice
    control, _ = await _control(lattice, nc)
    provider_id = "health_provider"
    await _watch_health(module, nc, provider_id)
    started = time.monotonic()
    await control.start_provider(provider_id, _own_par(lattice, provider_id))
    await asyncio.sleep(max(0.0, 68 - (time.monotonic() - started)))
    await control.stop_provider(provider_id)
    replies = module.health_replies
    print(f"health replies: {len(replies)}, max {max(replies) * 1000:.0f} ms, "
          f"median {statistics.median(replies) * 1000:.0f} ms")  # fmt: skip
    assert len(replies) >= 3
    assert max(replies) < HEALTH_DEADLINE / 2  # well inside: measured 1-206 ms
    # (A provider SIGKILLed by another test misses the checks while it restarts: not this one.)
    warnings = [line for line in lattice.host.log.read_text(errors="replace").splitlines()
                if "health" in line.lower() and provider_id in line
                and ("WARN" in line or "ERROR" in line)]  # fmt: skip
    assert not warnings, warnings[:5]
