"""Shared fixtures: real servers, started once per test session, unique names per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from devkit.local_nats import running_nats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def provider_par() -> Path:
    """`build/sqldb-postgres.par` (`make par`: up to date in a second, else ~30 s to build);
    or the archive PROVIDER_PAR names (`make release-test`: the release archive)."""
    given = os.environ.get("PROVIDER_PAR")
    if given:
        return Path(given).resolve()
    subprocess.run(["make", "--no-print-directory", "par"], cwd=ROOT, check=True)
    return ROOT / "build" / "sqldb-postgres.par"


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with running_nats() as url:
        yield url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Any]:
    connection = await nats.connect(nats_url)
    yield connection
    await connection.close()


@pytest.fixture
def prefix() -> str:
    """A lattice.provider prefix no other test (or test run) uses."""
    return f"t{uuid.uuid4().hex[:12]}.test_provider"


@pytest.fixture(scope="module")
def provider(nats_url: str) -> Iterator[Any]:
    """The provider as a child process on a lattice of its own, one per test module."""
    from devkit.provider_harness import RunningProvider

    running = RunningProvider(nats_url)
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def client(nc: Any, provider: Any) -> AsyncIterator[Any]:
    """A host-side wRPC client on the module's provider (modules may define their own)."""
    from provider.wrpc.client import WrpcClient

    wrpc = WrpcClient(nc, provider.host.prefix, result_timeout=30)
    await wrpc.start()
    yield wrpc
    await wrpc.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    from devkit.local_postgres import running_postgres

    with running_postgres() as server:
        yield server


def _new_database(server: Any) -> str:
    """Create a fresh database; runs in its own thread, so callers may be inside a loop."""
    import asyncio
    import threading

    names: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            names.append(asyncio.run(server.create_database("test")))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return names[0]


@pytest.fixture(scope="session")
def database(postgres_server: Any) -> str:
    """A database of this test run's own (runs never see each other's state)."""
    return _new_database(postgres_server)


@pytest.fixture(scope="session")
def make_database(postgres_server: Any) -> Any:
    return lambda: _new_database(postgres_server)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say what this run proved: a skipped capability is visible, not lost among dots."""
    from tests import capabilities

    terminalreporter.section("capabilities")
    for line in capabilities.summary_lines():
        terminalreporter.write_line(line)
