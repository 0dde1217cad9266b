"""The provider executable, started from its PAR exactly as a wasmCloud 1.x host starts it:
extracted to the host's cache path, no arguments, environment cleared, HostData on stdin;
stopped with the shutdown request and a SIGKILL — and nothing left behind. `make release-test`
runs the same suite on the release archive's aarch64 executable, under qemu-user."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from devkit.provider_harness import Caller, new_source_id, values_of, wait_linked
from host_shim.otlp_receiver import running_otlp_grpc_receiver, running_otlp_receiver
from host_shim.provider_image import (
    InstalledProvider,
    cache_file_name,
    install_provider,
    shim_target,
)
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import WrpcClient
from provider_archive.archive import host_target
from tests import capabilities

# Another machine's target (HOST_SHIM_TARGET=aarch64-linux, `make release-test`): run by
# qemu-user through binfmt_misc, as on an x86-64 machine that emulates an arm64 host.
EMULATED = shim_target() != host_target()


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


@dataclass
class StartedExecutable:
    host: LatticeHost
    process: ProviderProcess
    installed: InstalledProvider
    parent_pid: int
    child_pid: int
    unpacked_dir: Path
    seconds_to_healthy: float
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


async def start_from_archive(
    provider_par: Path, nats_url: str, tmp_path: Path, **host_data: Any
) -> StartedExecutable:
    host = LatticeHost(nats_url)
    installed = install_provider(f"file://{provider_par}", tmp_path, host.host_id)
    log_path = tmp_path / "provider.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - the process keeps writing to it
    process = ProviderProcess(host, log_file=log_file, command=[str(installed.executable)],
                              **host_data)  # fmt: skip
    started = time.perf_counter()
    process.start()
    nc = await nats.connect(nats_url)
    try:
        await process.wait_healthy(nc, timeout=60)
    finally:
        await nc.close()
    seconds = time.perf_counter() - started
    assert process.process is not None
    parent = process.process.pid
    (child,) = children_of(parent)
    unpacked = Path(environment_of(child)["_PYI_APPLICATION_HOME_DIR"])
    assert unpacked.is_dir()
    return StartedExecutable(host, process, installed, parent, child, unpacked, seconds, log_path)


def assert_nothing_left(started: StartedExecutable) -> None:
    assert wait_until(lambda: not is_running(started.child_pid)), "the Python child survived"
    assert wait_until(lambda: not started.unpacked_dir.exists()), "the unpacked tree was left"
    assert not is_running(started.parent_pid)


@pytest.fixture
async def executable(
    provider_par: Path, nats_url: str, tmp_path: Path
) -> AsyncIterator[StartedExecutable]:
    started = await start_from_archive(provider_par, nats_url, tmp_path)
    yield started
    # However the test ended it, a host's SIGKILL of the parent must leave nothing behind.
    if is_running(started.parent_pid):
        os.kill(started.parent_pid, signal.SIGKILL)
    started.process.kill()
    try:
        assert_nothing_left(started)
    finally:
        if is_running(started.child_pid):
            os.kill(started.child_pid, signal.SIGKILL)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Any]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


def test_the_archive_is_extracted_where_the_host_puts_it(executable: StartedExecutable) -> None:
    path = executable.installed.executable
    assert path.parent.name == executable.host.host_id
    assert path.parent.parent.name == "wasmcloudcache"
    assert path.name == cache_file_name(executable.installed.reference)
    assert path.stat().st_mode & 0o777 == 0o755
    assert executable.installed.archive.claims.name == "sqldb-postgres"


def test_it_runs_with_no_arguments_and_the_environment_cleared(
    executable: StartedExecutable,
) -> None:
    cmdline = Path(f"/proc/{executable.parent_pid}/cmdline").read_bytes().split(b"\0")
    if EMULATED:  # binfmt_misc (P flag) runs qemu with the program's path, then its argv
        assert b"qemu" in cmdline[0]
        cmdline = cmdline[2:]
    assert cmdline == [str(executable.installed.executable).encode(), b""]
    inherited = environment_of(executable.parent_pid)
    assert all(name.startswith(("RUST_LOG", "OTEL_")) for name in inherited), inherited
    print(f"\nstart to healthy {executable.seconds_to_healthy:.2f} s; RSS parent "
          f"{rss_mib(executable.parent_pid):.1f} MiB + child "
          f"{rss_mib(executable.child_pid):.1f} MiB")  # fmt: skip


async def test_it_serves_query_prepare_and_exec_with_typed_errors(
    executable: StartedExecutable, nc: Any, postgres_server: Any, make_database: Any
) -> None:
    host = executable.host
    source = new_source_id()
    config = postgres_server.link_config(make_database())
    password = config.pop("POSTGRES_PASSWORD")
    capabilities.require("secrets", bool(password), "this PostgreSQL has no password to hide")
    definition = host.link_definition(source, config, {"POSTGRES_PASSWORD": password})
    await host.put_link(nc, definition)
    client = WrpcClient(nc, host.prefix, result_timeout=30)
    await client.start()
    try:
        caller = Caller(client, source)
        await wait_linked(caller)
        result = await caller.query("SELECT $1::int4 + 1", [Case("int4", 41)])
        assert isinstance(result, Ok) and values_of(result.value) == [[Case("int4", 42)]]
        assert isinstance(await caller.batch("CREATE TABLE t (id int4)"), Ok)
        token = await caller.prepare("INSERT INTO t VALUES ($1)")
        assert isinstance(token, Ok)
        assert await caller.exec(token.value, [Case("int4", 7)]) == Ok(1)
        missing = await caller.query("SELECT * FROM no_such_table")
        assert isinstance(missing, Err) and missing.value.tag == "invalid-query"
        assert "42P01" in missing.value.value
        unknown = await caller.exec("pstmt-" + "0" * 32)
        assert isinstance(unknown, Err) and unknown.value.tag == "unknown-prepared-query"
        health = await host.health(nc)
        assert health["healthy"] is True and source in health["message"]
    finally:
        await client.close()
    assert password not in executable.log_text()


async def test_a_host_stop_answers_in_the_window_and_leaves_nothing(
    executable: StartedExecutable, nc: Any
) -> None:
    stop = await executable.process.stop_like_host(nc)
    assert stop.reply == b"shutting down"  # it came within the host's window (see HostStop)
    assert_nothing_left(executable)


async def test_a_bare_sigkill_of_the_parent_leaves_no_orphan_and_no_tree(
    executable: StartedExecutable, nc: Any
) -> None:
    os.kill(executable.parent_pid, signal.SIGKILL)
    assert_nothing_left(executable)
    with pytest.raises(nats.errors.NoRespondersError):
        await executable.host.health(nc, timeout=1)


def test_the_executable_refuses_bad_host_data(provider_par: Path, tmp_path: Path) -> None:
    import subprocess

    installed = install_provider(f"file://{provider_par}", tmp_path, "Nbadhostdata")
    completed = subprocess.run(
        [str(installed.executable)], input=b"not base64 json\r\n", capture_output=True,
        env={}, timeout=30,
    )  # fmt: skip
    assert completed.returncode == 2
    assert b"sqldb-postgres:" in completed.stderr


@pytest.mark.parametrize("protocol", ["Http", "Grpc"])
async def test_the_executable_exports_traces_and_metrics(
    protocol: str, provider_par: Path, nats_url: str, tmp_path: Path, nc: Any,
    postgres_server: Any, make_database: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """OpenTelemetry and both OTLP exporters are in the executable, and work there."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    receiver = running_otlp_grpc_receiver if protocol == "Grpc" else running_otlp_receiver
    with receiver() as (url, received):
        otel = {"enable_observability": True, "protocol": protocol, "observability_endpoint": url}
        started = await start_from_archive(provider_par, nats_url, tmp_path, otel_config=otel)
        host = started.host
        source = new_source_id()
        await host.put_link(nc, host.link_definition(source, postgres_server.link_config(
            make_database())))  # fmt: skip
        client = WrpcClient(nc, host.prefix, result_timeout=30)
        await client.start()
        try:
            caller = Caller(client, source)
            await wait_linked(caller)
            caller.headers["traceparent"] = f"00-{'ab' * 16}-{'cd' * 8}-01"
            assert isinstance(await caller.query("SELECT 1"), Ok)
            assert wait_until(lambda: any(s.trace_id.hex() == "ab" * 16 and s.kind == 3
                                          for s in received.span_list()), 15)  # fmt: skip
            assert wait_until(
                lambda: "db.client.operation.duration" in received.latest_metrics(), 15
            )
            stop = await started.process.stop_like_host(nc)
            assert stop.reply == b"shutting down"  # within the host's window
        finally:
            await client.close()
            started.process.kill()
        assert "Traceback" not in started.log_text()
