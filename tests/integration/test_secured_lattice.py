"""The provider on a secured lattice: an operator-mode nats-server (JWTs minted here, memory
resolver, JetStream for the account) and a TLS nats-server with a test CA. It serves with the
host's credentials and a minimal permission set, exits non-zero within its connect window with
one line naming the cause when it cannot, shows denied permissions in health, falls back from a
denied KV without per-call delay, and never logs a seed or a JWT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import RawCredentials

from devkit.provider_harness import Caller, new_source_id, values_of, wait_linked
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient
from tests.secure_nats import (
    Account,
    User,
    make_untrusted_ca,
    mint_account,
    mint_operator,
    mint_user,
    running_operator_nats,
    running_tls_nats,
)

CONNECT_WINDOW = 3.0  # NATS_CONNECT_TIMEOUT for the failure tests (the default is 15 s)
WINDOWED = {"NATS_CONNECT_TIMEOUT": str(CONNECT_WINDOW)}  # the provider config that sets it


@dataclass(frozen=True)
class OperatorLattice:
    url: str
    account: Account
    admin: User  # the test's own host-side connection, unrestricted


@pytest.fixture(scope="module")
def lattice() -> Iterator[OperatorLattice]:
    operator = mint_operator()
    account = mint_account(operator)
    with running_operator_nats(operator, [account]) as url:
        yield OperatorLattice(url, account, mint_user(account, name="admin"))


def minimal_user(account: Account, lattice_name: str, **changes: Any) -> User:
    """The permission set the provider needs, as the README lists it."""
    permissions: dict[str, Any] = {
        "allow_pub": ["_INBOX.>", "$JS.API.>", "$KV.>"],
        "allow_sub": [f"wasmbus.rpc.{lattice_name}.>", f"{lattice_name}.>", "_INBOX.>"],
    }
    return mint_user(account, **(permissions | changes))


@pytest.fixture
async def admin_nc(lattice: OperatorLattice) -> AsyncIterator[Any]:
    connection = await nats.connect(
        lattice.url, user_credentials=RawCredentials(lattice.admin.creds())
    )
    yield connection
    await connection.close()


def start(
    host: LatticeHost, log_path: Path, user: User | None, **host_data: Any
) -> ProviderProcess:
    credentials: dict[str, Any] = {}
    if user is not None:
        credentials = {"lattice_rpc_user_jwt": user.jwt, "lattice_rpc_user_seed": user.seed}
    log_file = open(log_path, "wb")  # noqa: SIM115 - the child writes to it until it exits
    process = ProviderProcess(host, log_file=log_file, **credentials, **host_data)
    process.start()
    return process


async def linked(
    host: LatticeHost, admin_nc: Any, config: dict[str, str]
) -> tuple[WrpcClient, Caller]:
    source = new_source_id()
    await host.put_link(admin_nc, host.link_definition(source, config))
    client = WrpcClient(admin_nc, host.prefix, result_timeout=30)
    await client.start()
    caller = Caller(client, source)
    await wait_linked(caller)
    return client, caller


def assert_no_credentials(log: str, *users: User) -> None:
    for user in users:
        assert user.seed not in log and user.jwt not in log
        assert user.jwt.split(".")[1] not in log  # not even the claims part


def exits_within(process: ProviderProcess, seconds: float) -> tuple[int, float]:
    started = time.monotonic()
    code = process.wait_exit(timeout=seconds)
    return code, time.monotonic() - started


def run_to_exit(
    host: LatticeHost, log_path: Path, user: User | None, seconds: float, **host_data: Any
) -> tuple[int, float, str]:
    """Started as a host starts it and left to exit (killed after `seconds`): its exit code,
    how long it took, and its log."""
    process = start(host, log_path, user, **host_data)
    try:
        code, took = exits_within(process, seconds)
    finally:
        process.kill()
    return code, took, log_path.read_text()


async def first_unhealthy(process: ProviderProcess, nc: Any) -> dict[str, Any]:
    """Health until it says unhealthy (denials arrive asynchronously), for up to ~5 s."""
    health: dict[str, Any] = {}
    for _ in range(50):
        health = await process.wait_healthy(nc)
        if not health["healthy"]:
            break
        await asyncio.sleep(0.1)
    return health


def denial_lines(log: str) -> list[dict[str, Any]]:
    entries = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [e for e in entries if e["message"] == "permission denied by the lattice's NATS account"]


def error_lines(log: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry["level"] == "error"]


async def test_it_serves_with_the_hosts_credentials_and_minimal_permissions(
    lattice: OperatorLattice,
    admin_nc: Any,
    tmp_path: Path,
    postgres_server: Any,
    make_database: Any,
) -> None:
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice)
    process = start(host, tmp_path / "provider.log", user, log_level="debug")
    try:
        health = await process.wait_healthy(admin_nc)
        assert health["healthy"] is True and "will not share" not in health["message"]
        client, caller = await linked(host, admin_nc, postgres_server.link_config(make_database()))
        result = await caller.query("SELECT $1::text", [Case("text", "secured")])
        assert isinstance(result, Ok) and values_of(result.value) == [[Case("text", "secured")]]
        token = await caller.prepare("SELECT 40 + $1::int4")
        assert isinstance(token, Ok)
        answer = await caller.exec(token.value, [Case("int4", 2)])
        assert answer == Ok(1)
        await client.close()
        assert (await process.stop_like_host(admin_nc)).reply == b"shutting down"
    finally:
        process.kill()
    log = (tmp_path / "provider.log").read_text()
    assert "permission denied" not in log
    assert_no_credentials(log, user)


@pytest.mark.parametrize("failure", ["wrong seed", "expired JWT"])
async def test_refused_credentials_exit_within_the_window_with_the_cause(
    lattice: OperatorLattice, tmp_path: Path, failure: str
) -> None:
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice)
    other = minimal_user(lattice.account, host.lattice)
    if failure == "wrong seed":
        presented = User(other.seed, user.public, user.jwt, user.account_public)
    else:
        presented = minimal_user(lattice.account, host.lattice, expires_at=time.time() - 60)
    log_path = tmp_path / "provider.log"
    code, seconds, log = run_to_exit(host, log_path, presented, CONNECT_WINDOW + 10,
                                     config=WINDOWED)  # fmt: skip
    assert code == 1
    assert seconds < CONNECT_WINDOW + 5
    (line,) = error_lines(log)
    assert "cannot serve, exiting: cannot connect to the lattice" in line["message"]
    assert "the server refused the credentials" in line["message"]
    assert "Traceback" not in log
    assert_no_credentials(log, presented, user, other)


async def test_a_user_that_expires_while_connected_ends_the_process(
    lattice: OperatorLattice, admin_nc: Any, tmp_path: Path
) -> None:
    """What a host needs after a revocation or expiry: an exit, so it restarts us fresh."""
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice, expires_at=time.time() + 4)
    log_path = tmp_path / "provider.log"
    process = start(host, log_path, user)
    try:
        await process.wait_healthy(admin_nc)
        code, _ = exits_within(process, 20)
    finally:
        process.kill()
    log = log_path.read_text()
    assert code == 1
    (line,) = error_lines(log)
    assert "cannot serve, exiting: the lattice connection" in line["message"]
    assert "expired" in line["message"].lower()
    assert_no_credentials(log, user)


async def test_denied_function_subscriptions_make_health_unhealthy(
    lattice: OperatorLattice, admin_nc: Any, tmp_path: Path
) -> None:
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice, deny_sub=[f"{host.prefix}.wrpc.>"])
    log_path = tmp_path / "provider.log"
    process = start(host, log_path, user)
    try:
        health = await first_unhealthy(process, admin_nc)
        assert health["healthy"] is False
        assert "NATS permissions deny subscribing to" in health["message"]
        assert (
            f"{host.prefix}.wrpc.0.0.1.wasmcloud:postgres/query@0.1.1-draft.query"
            in (health["message"])
        )
    finally:
        process.kill()
    log = log_path.read_text()
    denials = denial_lines(log)
    assert {entry["operation"] for entry in denials} == {"subscribe"}
    assert len(denials) == len({entry["subject"] for entry in denials})  # once per subject


async def test_denied_replies_make_health_unhealthy_with_the_subjects_shape(
    lattice: OperatorLattice,
    admin_nc: Any,
    tmp_path: Path,
    postgres_server: Any,
    make_database: Any,
) -> None:
    """Results cannot be published: every call would time out at the caller, so health must
    say so, and the one log line names the subjects' shape, not all inboxes."""
    host = LatticeHost(lattice.url)
    # A host's results go to `_INBOX.<id>.results`; this test's client calls from
    # `_INBOX.<id>.<n>`, so its results go to `_INBOX.<id>.<n>.results`.
    user = minimal_user(lattice.account, host.lattice, deny_pub=["_INBOX.*.*.results"])
    log_path = tmp_path / "provider.log"
    process = start(host, log_path, user)
    try:
        assert (await process.wait_healthy(admin_nc))["healthy"] is True
        source = new_source_id()
        config = postgres_server.link_config(make_database())
        await host.put_link(admin_nc, host.link_definition(source, config))
        client = WrpcClient(admin_nc, host.prefix, result_timeout=1)
        await client.start()
        for _ in range(3):  # calls whose results are denied (they time out at the caller)
            with contextlib.suppress(Exception):
                await Caller(client, source).query("SELECT 1")
        await client.close()
        health = await first_unhealthy(process, admin_nc)
        assert health["healthy"] is False, health
        assert "deny publishing replies to _INBOX.*.*.results" in health["message"], health
    finally:
        process.kill()
    log = log_path.read_text()
    denials = denial_lines(log)
    assert [(d["operation"], d["subject"]) for d in denials] == [("publish", "_INBOX.*.*.results")]


async def test_a_malformed_seed_exits_with_one_line_and_no_traceback(
    lattice: OperatorLattice, tmp_path: Path
) -> None:
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice)
    malformed = User("SUAnot-a-seed", user.public, user.jwt, user.account_public)
    log_path = tmp_path / "provider.log"
    code, seconds, log = run_to_exit(host, log_path, malformed, CONNECT_WINDOW + 10,
                                     config=WINDOWED)  # fmt: skip
    assert code != 0 and seconds < CONNECT_WINDOW + 5
    assert "Traceback" not in log, log[-3000:]
    (line,) = error_lines(log)
    assert "seed" in line["message"], line
    assert "SUAnot-a-seed" not in log


async def test_a_denied_kv_is_detected_once_and_costs_no_call_any_delay(
    lattice: OperatorLattice,
    admin_nc: Any,
    tmp_path: Path,
    postgres_server: Any,
    make_database: Any,
) -> None:
    host = LatticeHost(lattice.url)
    user = minimal_user(lattice.account, host.lattice, deny_pub=["$KV.>"])
    log_path = tmp_path / "provider.log"
    process = start(host, log_path, user)
    try:
        health = await process.wait_healthy(admin_nc)
        assert health["healthy"] is True
        assert "replicas will not share statement tokens" in health["message"]
        client, caller = await linked(host, admin_nc, postgres_server.link_config(make_database()))
        slowest = 0.0
        for index in range(5):
            started = time.perf_counter()
            token = await caller.prepare(f"SELECT {index} + $1::int4")
            assert isinstance(token, Ok)
            assert await caller.exec(token.value, [Case("int4", 1)]) == Ok(1)
            slowest = max(slowest, time.perf_counter() - started)
        # A KV timeout in any call would make it take 2 s; under 1.5 s leaves a loaded 2-core
        # machine room and still fails on that.
        assert slowest < 1.5, f"the slowest prepare+exec took {slowest:.2f} s"
        await client.close()
    finally:
        process.kill()
    log = log_path.read_text()
    assert log.count("no usable JetStream key-value bucket") == 1


@pytest.fixture(scope="module")
def tls_lattice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with running_tls_nats(tmp_path_factory.mktemp("nats-tls")) as (url, ca):
        yield url, ca


@pytest.mark.parametrize("ca_form", ["pem", "path"])
async def test_tls_with_the_ca_from_the_provider_config(
    tls_lattice: tuple[str, Path], tmp_path: Path, ca_form: str
) -> None:
    url, ca = tls_lattice
    host = LatticeHost(url)
    ca_value = ca.read_text() if ca_form == "pem" else str(ca)
    process = start(host, tmp_path / "provider.log", None, config={"NATS_TLS_CA": ca_value})
    nc = await nats.connect(url, tls=_trusting(ca))
    try:
        health = await process.wait_healthy(nc)
        assert health["healthy"] is True
    finally:
        process.kill()
        await nc.close()


async def test_an_untrusted_nats_ca_exits_within_the_window(
    tls_lattice: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = tls_lattice
    untrusted = make_untrusted_ca(tmp_path)
    host = LatticeHost(url)
    log_path = tmp_path / "provider.log"
    config = {"NATS_TLS_CA": str(untrusted), **WINDOWED}
    code, seconds, log = run_to_exit(host, log_path, None, CONNECT_WINDOW + 10, config=config)
    assert code == 1 and seconds < CONNECT_WINDOW + 5
    (line,) = error_lines(log)
    assert "TLS: the server's certificate is not trusted" in line["message"]
    assert "NATS_TLS_CA" in line["message"]
    assert "Traceback" not in log


def _trusting(ca: Path) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    return context


async def test_no_nats_at_all_exits_within_the_window(tmp_path: Path) -> None:
    from devkit.local_nats import free_port

    host = LatticeHost(f"nats://127.0.0.1:{free_port()}")  # nobody listens there
    log_path = tmp_path / "provider.log"
    code, seconds, log = run_to_exit(host, log_path, None, 15, config={"NATS_CONNECT_TIMEOUT": "2"})
    assert code == 1 and seconds < 7
    (line,) = error_lines(log)
    assert line["message"].endswith("within 2 s: connection refused")
