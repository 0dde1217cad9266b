"""Statement records shared by the provider's replicas, in a JetStream key-value bucket.

wasmCloud lattices run JetStream (hosts keep their config there). One bucket per lattice and
provider id; a key per token, prefixed by a hash of the link it belongs to, so a record can
only be found by the link that made it, and a link delete purges its prefix. Values are the
records' msgpack bytes. Without JetStream the provider works alone (records stay local).

Whether the bucket can really be used is found out once, at start, with a probe record: an
account may allow creating the bucket but deny `$KV.>` (or have no JetStream at all), and then
every call would wait for a timeout. `open` raises `StoreUnavailable` saying why.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

BUCKET_BYTES = 64 * 1024 * 1024  # oldest records go first past this
PROBE_KEY = "probe"
JETSTREAM_TIMEOUT = 2.0


def bucket_name(lattice: str, provider_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"sqldb_postgres_statements_{lattice}_{provider_id}")


def _link_prefix(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()[:32]


class StoreUnavailable(RuntimeError):
    """No usable bucket here; the text says why (records then stay on this replica)."""


class JetStreamStatements:
    def __init__(self, kv: Any) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, nc: Any, lattice: str, provider_id: str) -> JetStreamStatements:
        from nats.js.api import KeyValueConfig, StorageType

        try:
            js = nc.jetstream(timeout=JETSTREAM_TIMEOUT)
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket_name(lattice, provider_id),
                    history=1,
                    max_bytes=BUCKET_BYTES,
                    storage=StorageType.FILE,
                    description="sqldb-postgres prepared statements shared by replicas",
                )
            )
            await kv.put(PROBE_KEY, b"")  # `$KV.>` publish: what every prepare needs
            await kv.get(PROBE_KEY)  # `$JS.API.>`: what every exec on another replica needs
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise StoreUnavailable(reason) from None
        return cls(kv)

    async def save(self, link: str, token: str, record: bytes) -> None:
        await self._kv.put(f"{_link_prefix(link)}.{token}", record)

    async def load(self, link: str, token: str) -> bytes | None:
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self._kv.get(f"{_link_prefix(link)}.{token}")
        except KeyNotFoundError:
            return None
        value: bytes | None = entry.value
        return value

    async def forget(self, link: str, token: str) -> None:
        await self._kv.purge(f"{_link_prefix(link)}.{token}")

    async def forget_link(self, link: str) -> None:
        from nats.js.errors import NoKeysError

        prefix = f"{_link_prefix(link)}."
        try:
            keys = await self._kv.keys()  # nats-py's filters match substrings: filter here
        except NoKeysError:
            return
        for key in keys:
            if key.startswith(prefix):
                await self._kv.purge(key)
