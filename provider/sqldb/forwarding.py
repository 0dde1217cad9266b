"""Calls on another replica's transaction, relayed to that replica and answered from it.

Replicas share one queue group, so a transaction's next call may reach a replica that does not
hold its connection. The token names the replica that does; each replica also serves the
transactions functions on a subject of its own (`{prefix}.replica.{id}`, no sharing), and any
other replica forwards the call there over NATS and relays the answer. An owner that is gone
(no responders) or that does not even acknowledge the call within `HANDSHAKE_TIMEOUT` means
the transaction is gone with it: None, which the caller answers `unknown-transaction`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from provider.lattice.replicas import replica_prefix
from provider.wit.model import Function
from provider.wrpc.client import WrpcClient, WrpcError

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 1.0  # an owner alive answers the handshake at once, before any SQL runs
RESULT_TIMEOUT = 600.0  # then its statement may take as long as the host lets a call take


class TransactionForwarder:
    """One wRPC client for every owner: each call names its owner's subjects (no client,
    subscription or cache per owner, so tokens naming made-up replicas cost nothing)."""

    def __init__(self, nc: Any, prefix: str) -> None:
        self._prefix = prefix
        self._client = WrpcClient(nc, prefix, handshake_timeout=HANDSHAKE_TIMEOUT,
                                  result_timeout=RESULT_TIMEOUT)  # fmt: skip
        self._started: asyncio.Task[None] | None = None

    async def call(
        self, owner: str, function: Function, params: Sequence[Any], headers: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        """The owner's answer to this call, or None when the owner is gone."""
        if self._started is None:  # one subscription, made by the first forwarded call
            self._started = asyncio.ensure_future(self._client.start())
        try:
            await asyncio.shield(self._started)
            return await self._client.call(
                function, params, headers, prefix=replica_prefix(self._prefix, owner)
            )
        except (WrpcError, TimeoutError, ConnectionError) as exc:
            log.info("transaction owner unreachable", extra={"owner": owner, "error": str(exc)})
            return None

    async def close(self) -> None:
        if self._started is not None:
            await self._client.close()
