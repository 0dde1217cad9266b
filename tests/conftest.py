"""Shared fixtures: real servers, started once per test session, unique names per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest

from host_shim.local_nats import running_nats


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
