"""Which optional capabilities a run proved, and what happens to the ones it could not.

Some tests need something only a full machine has: a PostgreSQL with TLS, libxml and password
authentication (the machine's package, not the embedded wheel), Debian's docker-registry and
pgbouncer, wash. Where such a part is simply not installed (a laptop), its tests skip and say so;
where the run must prove everything (`.ci/run` exports `SQLDB_REQUIRE_ALL=1`), a missing part is a
failure. A part that is installed but does not work is always a failure, never a skip: callers
raise for that themselves. The closing summary (tests/conftest.py) lists what ran.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import NoReturn

import pytest

# name -> what proving it means, as the summary prints it
CAPABILITIES: dict[str, str] = {
    "tls": "PostgreSQL over TLS, server verified with our CA",
    "xml": "xml and xml[] values (a server built with libxml)",
    "secrets": "password authentication: secrets override config, wrong passwords refused",
    "restart": "the PostgreSQL server restarted under load",
    "small-server": "200 links sharing a server of our own with max_connections 60",
    "silence": "a database server gone silent: packets dropped on loopback (iptables, root)",
    "oci-registry": "push and pull through a real OCI registry (docker-registry)",
    "pgbouncer": "transaction-mode pooling behind PgBouncer",
    "wash": "the differential comparison against wash's own provider",
}

_proven: Counter[str] = Counter()
_unavailable: dict[str, str] = {}


def everything_required() -> bool:
    """True where a missing capability must fail the run instead of skipping."""
    return os.environ.get("SQLDB_REQUIRE_ALL", "") not in ("", "0")


def require(name: str, available: bool, reason: str) -> None:
    """Count a test as proving `name`, or skip it (fail under SQLDB_REQUIRE_ALL) with `reason`."""
    if name not in CAPABILITIES:
        raise KeyError(f"unknown capability {name!r}: add it to CAPABILITIES")
    if available:
        _proven[name] += 1
        return
    unavailable(name, reason)


def unavailable(name: str, reason: str) -> NoReturn:
    _unavailable[name] = reason
    if everything_required():
        pytest.fail(f"{name} is required here (SQLDB_REQUIRE_ALL) but unavailable: {reason}")
    pytest.skip(f"{name} unavailable here: {reason}")


def summary_lines() -> list[str]:
    """One line per capability: proven by how many tests, or why not."""
    lines = []
    for name, meaning in CAPABILITIES.items():
        if _proven[name]:
            lines.append(f"ran      {name:<13} {meaning} ({_proven[name]} tests)")
        elif name in _unavailable:
            lines.append(f"NOT RUN  {name:<13} {_unavailable[name]}")
        else:
            lines.append(f"not here {name:<13} (no test that needs it was selected)")
    return lines
