"""The subjects one replica of a provider serves alone (replicas otherwise share one queue
group): calls another replica forwards to it, e.g. those on a transaction it holds."""

from __future__ import annotations


def replica_prefix(prefix: str, replica: str) -> str:
    """The wRPC prefix only replica `replica` serves."""
    return f"{prefix}.replica.{replica}"
