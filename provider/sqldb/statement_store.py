"""Statement records shared by the provider's replicas, in a key-value bucket of the lattice.

wasmCloud lattices run JetStream (hosts keep their config there). One bucket per lattice and
provider id; a key per token, prefixed by a hash of the link it belongs to, so a record can
only be found by the link that made it, and a link delete erases its prefix in one request.
A token forgotten (evicted at the link's bound, or its link deleted) leaves nothing behind, not
even a purge marker: the bucket holds live tokens only, at most the links' POSTGRES_MAX_STATEMENTS
together. Values are the records' msgpack bytes. Without a usable bucket the provider works
alone (records stay local).
"""

from __future__ import annotations

import hashlib
import re

from provider.lattice.services import KeyValueBucket, LatticeServices

BUCKET_BYTES = 64 * 1024 * 1024  # oldest records go first past this


def bucket_name(lattice: str, provider_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"sqldb_postgres_statements_{lattice}_{provider_id}")


def _link_prefix(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()[:32]


class SharedStatementStore:
    def __init__(self, bucket: KeyValueBucket) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, services: LatticeServices) -> SharedStatementStore:
        """Raises `ServiceUnavailable` (why) where the lattice has no usable bucket."""
        host = services.host_data
        bucket = await services.key_value(
            bucket_name(host.lattice, host.provider_key),
            description="sqldb-postgres prepared statements shared by replicas",
            max_bytes=BUCKET_BYTES,
        )
        return cls(bucket)

    async def save(self, link: str, token: str, record: bytes) -> None:
        await self._bucket.put(f"{_link_prefix(link)}.{token}", record)

    async def load(self, link: str, token: str) -> bytes | None:
        return await self._bucket.get(f"{_link_prefix(link)}.{token}")

    async def forget(self, link: str, token: str) -> None:
        await self._bucket.erase(f"{_link_prefix(link)}.{token}")  # nothing left behind

    async def forget_link(self, link: str) -> None:
        """One request for the link's own keys, however many other links' the bucket holds."""
        await self._bucket.erase_prefix(_link_prefix(link))
