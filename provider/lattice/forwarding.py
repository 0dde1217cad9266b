"""Calls on another replica's transaction, relayed to that replica and answered from it.

Replicas share one queue group, so a transaction's next call may reach a replica that does not
hold its connection. The token names the replica that does; each replica also serves the
transactions functions on a subject of its own (`{prefix}.replica.{id}`, no sharing), and any
other replica forwards the call there over NATS and relays the answer. An owner that is gone
(no responders) or that does not even acknowledge the call within `HANDSHAKE_TIMEOUT` means
the transaction is gone with it: None, which the caller answers `unknown-transaction`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from provider.wrpc.nats_client import WrpcClient, WrpcError
from provider.wrpc.wit_model import Function

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 1.0  # an owner alive answers the handshake at once, before any SQL runs
RESULT_TIMEOUT = 600.0  # then its statement may take as long as the host lets a call take
MAX_OWNERS = 64


def replica_prefix(prefix: str, replica: str) -> str:
    """The subjects only replica `replica` serves: its transactions, for forwarded calls."""
    return f"{prefix}.replica.{replica}"


class TransactionForwarder:
    def __init__(self, nc: Any, prefix: str) -> None:
        self._nc = nc
        self._prefix = prefix
        self._clients: OrderedDict[str, WrpcClient] = OrderedDict()

    async def call(
        self, owner: str, function: Function, params: Sequence[Any], headers: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        """The owner's answer to this call, or None when the owner is gone."""
        client = await self._client(owner)
        try:
            return await client.call(function, list(params), headers)
        except (WrpcError, TimeoutError, ConnectionError) as exc:
            log.info("transaction owner unreachable", extra={"owner": owner, "error": str(exc)})
            return None

    async def _client(self, owner: str) -> WrpcClient:
        client = self._clients.get(owner)
        if client is not None:
            self._clients.move_to_end(owner)
            return client
        client = WrpcClient(self._nc, replica_prefix(self._prefix, owner),
                            handshake_timeout=HANDSHAKE_TIMEOUT,
                            result_timeout=RESULT_TIMEOUT)  # fmt: skip
        await client.start()
        self._clients[owner] = client
        if len(self._clients) > MAX_OWNERS:
            _, oldest = self._clients.popitem(last=False)
            await oldest.close()
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
