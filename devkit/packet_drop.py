"""A network gone silent, on loopback: every packet to and from one TCP port dropped.

Drops without a reset, as a failover, an expired NAT entry or a partition does, so a client
learns of it only from its own timeouts. Uses iptables (root). Each rule carries a comment
naming this process, so `dropped` removes exactly its own rules on every path, and rules a
killed run left behind are recognisable (`iptables -S | grep sqldb-silence`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

IPTABLES = "iptables"


def available() -> str | None:
    """None when packets can be dropped here; else why not."""
    if shutil.which(IPTABLES) is None and not os.path.exists(f"/usr/sbin/{IPTABLES}"):
        return "iptables is not installed (Debian: apt-get install iptables)"
    if os.geteuid() != 0:
        return "dropping packets with iptables needs root"
    probe = subprocess.run([_iptables(), "-S", "INPUT"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"iptables does not work here: {probe.stderr.strip()[:200]}"
    return None


@contextlib.contextmanager
def dropped(port: int) -> Iterator[None]:
    """While inside: packets to and from 127.0.0.1:`port` are dropped (both directions)."""
    rules = [_rule(port, "--dport"), _rule(port, "--sport")]
    added: list[list[str]] = []
    try:
        for rule in rules:
            subprocess.run([_iptables(), "-I", *rule], check=True, capture_output=True)
            added.append(rule)
        yield
    finally:
        for rule in added:
            subprocess.run([_iptables(), "-D", *rule], check=False, capture_output=True)


def _rule(port: int, direction: str) -> list[str]:
    return ["INPUT", "-i", "lo", "-p", "tcp", direction, str(port), "-m", "comment",
            "--comment", f"sqldb-silence-{os.getpid()}", "-j", "DROP"]  # fmt: skip


def _iptables() -> str:
    return shutil.which(IPTABLES) or f"/usr/sbin/{IPTABLES}"
