"""Statement records shared by the provider's replicas, in a JetStream key-value bucket.

wasmCloud lattices run JetStream (hosts keep their config there). One bucket per lattice and
provider id; a key per token, prefixed by a hash of the link it belongs to, so a record can
only be found by the link that made it, and a link delete purges its prefix. Values are the
records' msgpack bytes. Without JetStream the provider works alone (records stay local).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

BUCKET_BYTES = 64 * 1024 * 1024  # oldest records go first past this


def bucket_name(lattice: str, provider_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"sqldb_postgres_statements_{lattice}_{provider_id}")


def _link_prefix(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()[:32]


class JetStreamStatements:
    def __init__(self, kv: Any) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, nc: Any, lattice: str, provider_id: str) -> JetStreamStatements | None:
        from nats.js.api import KeyValueConfig, StorageType

        try:
            js = nc.jetstream(timeout=2)
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket_name(lattice, provider_id),
                    history=1,
                    max_bytes=BUCKET_BYTES,
                    storage=StorageType.FILE,
                    description="sqldb-postgres prepared statements shared by replicas",
                )
            )
        except Exception as exc:
            log.warning(
                "no JetStream: prepared statements stay on this replica", extra={"error": str(exc)}
            )
            return None
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
