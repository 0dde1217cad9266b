"""What the lattice offers a provider's hooks, as typed handles (not the NATS client itself):
a key-value bucket shared by the provider's replicas (JetStream), and calls to the functions
one replica serves alone (`replicas`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, NoKeysError

from provider.lattice.host_data import HostData
from provider.lattice.replicas import replica_prefix
from provider.wit.model import Function
from provider.wrpc.client import WrpcClient, WrpcError

log = logging.getLogger(__name__)

JETSTREAM_TIMEOUT = 2.0


class ServiceUnavailable(RuntimeError):
    """The lattice cannot offer this service here; the text says why."""


class KeyValueBucket:
    """A JetStream key-value bucket: bytes under keys, shared by whoever opens the same name."""

    def __init__(self, kv: Any, js: Any, name: str) -> None:
        self._kv, self._js = kv, js
        self._stream = f"KV_{name}"  # JetStream's names for a bucket's stream and subjects
        self._subjects = f"$KV.{name}."

    async def put(self, key: str, value: bytes) -> None:
        await self._kv.put(key, value)

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        value: bytes | None = entry.value
        return value

    async def erase(self, key: str) -> None:
        """Remove every message of `key`: a KV purge leaves a marker the bucket keeps (its
        history of one is that marker), so churned keys would fill it; this leaves nothing."""
        await self._erase_subject(key)

    async def erase_prefix(self, prefix: str) -> None:
        """Remove every key under `prefix.` in one request, whatever else the bucket holds."""
        await self._erase_subject(f"{prefix}.>")

    async def _erase_subject(self, keys: str) -> None:
        await self._js.purge_stream(self._stream, subject=f"{self._subjects}{keys}")

    async def stored(self) -> tuple[int, int]:
        """(messages, bytes) the bucket holds now: live values and any markers."""
        info = await self._js.stream_info(self._stream)
        return int(info.state.messages), int(info.state.bytes)

    async def keys(self) -> list[str]:
        try:
            return list(await self._kv.keys())
        except NoKeysError:
            return []


class ReplicaCalls:
    """Calls on the functions another replica serves alone (`replica_exports`), answered from
    it. One wRPC client for every replica: each call names its owner's subjects (no client,
    subscription or cache per owner, so calls naming made-up replicas cost nothing)."""

    def __init__(self, client: WrpcClient, prefix: str) -> None:
        self._client, self._prefix = client, prefix
        self._started: asyncio.Future[None] | None = None

    async def call(
        self, replica: str, function: Function, params: Sequence[Any], headers: Mapping[str, str]
    ) -> tuple[Any, ...] | None:
        """The replica's answer, or None when it is gone (no responders, no handshake)."""
        if self._started is None:  # one subscription, made by the first call
            self._started = asyncio.ensure_future(self._client.start())
        try:
            await asyncio.shield(self._started)
            return await self._client.call(
                function, params, headers, prefix=replica_prefix(self._prefix, replica)
            )
        except (WrpcError, TimeoutError, ConnectionError) as exc:
            log.info("replica unreachable", extra={"replica": replica, "error": str(exc)})
            return None

    async def close(self) -> None:
        if self._started is not None:
            await self._client.close()


class LatticeServices:
    """Handed to the hooks' `attach` once the provider is connected to its lattice."""

    def __init__(self, nc: Any, host_data: HostData) -> None:
        self._nc, self.host_data = nc, host_data
        self.prefix = f"{host_data.lattice}.{host_data.provider_key}"

    async def key_value(self, bucket: str, description: str, max_bytes: int) -> KeyValueBucket:
        """The bucket (created if missing), once a probe showed every operation is allowed:
        an account may allow creating it but deny `$KV.>`, or have no JetStream at all, and
        every use would then wait for a timeout. Raises ServiceUnavailable saying why."""
        try:
            js = self._nc.jetstream(timeout=JETSTREAM_TIMEOUT)
            kv = await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=1, max_bytes=max_bytes,
                               storage=StorageType.FILE, description=description)
            )  # fmt: skip
            await kv.put("probe", b"")  # `$KV.>` publish
            await kv.get("probe")  # `$JS.API.>`
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise ServiceUnavailable(reason) from None
        return KeyValueBucket(kv, js, bucket)

    def replica_calls(self, handshake_timeout: float, result_timeout: float) -> ReplicaCalls:
        client = WrpcClient(self._nc, self.prefix, handshake_timeout=handshake_timeout,
                            result_timeout=result_timeout)  # fmt: skip
        return ReplicaCalls(client, self.prefix)
