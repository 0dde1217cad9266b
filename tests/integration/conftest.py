"""Fixtures the integration tests share (the session-wide servers are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from host_shim.provider_process import LatticeHost
from provider.lattice.link_reconciliation import RestartMemo


@pytest.fixture
def host(nats_url: str) -> Iterator[LatticeHost]:
    """The host side of one provider, on a lattice of its own; the restart memo the provider
    may leave is removed afterwards."""
    lattice_host = LatticeHost(nats_url)
    yield lattice_host
    memo = RestartMemo(lattice_host.lattice, lattice_host.provider_id, lattice_host.host_id)
    memo.path.unlink(missing_ok=True)
