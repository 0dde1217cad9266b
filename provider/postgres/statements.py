"""The prepared-statement registry: opaque tokens → statement records, scoped per link.

A token is 128 random bits from a CSPRNG; it means something only to the link (source
component) that prepared it, so another component presenting it gets `unknown-prepared-query`.
The record holds the SQL text, which any connection of the link's pool can prepare again, and
its *pin*: the connection that prepared it last, preferred while it is idle and alive, never
waited for. Preparing the same SQL twice on one link returns the same token. Each link keeps at
most `max_statements` records; at the bound the least recently used record is dropped (its
token becomes unknown). Records are small and serialise with msgpack (`to_bytes`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections import OrderedDict
from typing import Any, Protocol

import msgpack

from provider.postgres.retry import is_read_only

log = logging.getLogger(__name__)


class SharedStatements(Protocol):
    """Where replicas of the provider share statement records (a JetStream KV bucket)."""

    async def save(self, link: str, token: str, record: bytes) -> None: ...

    async def load(self, link: str, token: str) -> bytes | None: ...

    async def forget(self, link: str, token: str) -> None: ...

    async def forget_link(self, link: str) -> None: ...


class StatementRecord:
    __slots__ = ("_pin", "read_only", "sql", "token")

    def __init__(self, token: str, sql: str) -> None:
        self.token = token
        self.sql = sql
        self.read_only = is_read_only(sql)
        self._pin: weakref.ref[Any] | None = None

    def pinned(self) -> Any | None:
        """The connection this statement is pinned to, if it is still alive."""
        connection = self._pin() if self._pin is not None else None
        if connection is None or connection.is_closed():
            return None
        return connection

    def pin_if_unpinned(self, connection: Any) -> None:
        """Re-pin to `connection` when the pin is gone (closed, killed, replaced)."""
        if self.pinned() is None:
            self._pin = weakref.ref(connection)

    def to_bytes(self) -> bytes:
        packed: bytes = msgpack.packb((1, self.token, self.sql))
        return packed

    @classmethod
    def from_bytes(cls, data: bytes) -> StatementRecord:
        """The record in `data`; ValueError for anything but a version-1 record (a newer
        replica's format is refused by its version, before its shape is read)."""
        fields = msgpack.unpackb(data)
        if not isinstance(fields, list | tuple) or not fields:
            raise ValueError("not a statement record")
        if fields[0] != 1:
            raise ValueError(f"unknown statement record version {fields[0]!r}")
        if len(fields) != 3 or not all(isinstance(field, str) for field in fields[1:]):
            raise ValueError("a version-1 statement record of the wrong shape")
        return cls(fields[1], fields[2])


class LinkStatements:
    """One link's statements, least recently used first."""

    def __init__(self, max_statements: int) -> None:
        self.max_statements = max_statements
        self._by_token: OrderedDict[str, StatementRecord] = OrderedDict()
        self._token_by_sql: dict[str, str] = {}
        self.evictions = 0
        self.evicted_tokens: list[str] = []  # since the last `take_evicted()`

    def register(self, sql: str) -> StatementRecord:
        token = self._token_by_sql.get(sql)
        if token is not None:
            self._by_token.move_to_end(token)
            return self._by_token[token]
        record = StatementRecord(f"pstmt-{secrets.token_urlsafe(16)}", sql)
        self._by_token[record.token] = record
        self._token_by_sql[sql] = record.token
        self.enforce_bound()
        return record

    def enforce_bound(self) -> None:
        while len(self._by_token) > self.max_statements:
            _, evicted = self._by_token.popitem(last=False)
            self._token_by_sql.pop(evicted.sql, None)
            self.evictions += 1
            self.evicted_tokens.append(evicted.token)

    def take_evicted(self) -> list[str]:
        evicted, self.evicted_tokens = self.evicted_tokens, []
        return evicted

    def adopt(self, record: StatementRecord) -> StatementRecord:
        """Keep a record another replica made (same token), within the bound."""
        existing = self._token_by_sql.get(record.sql)
        if existing is not None and existing != record.token:
            self._by_token.pop(existing, None)  # the other replica's token wins for this SQL
        self._by_token[record.token] = record
        self._token_by_sql[record.sql] = record.token
        self.enforce_bound()
        return record

    def get(self, token: str) -> StatementRecord | None:
        record = self._by_token.get(token)
        if record is not None:
            self._by_token.move_to_end(token)
        return record

    def __len__(self) -> int:
        return len(self._by_token)


# Deleted links whose shared records wait for the store to answer again, at most.
MAX_UNFORGOTTEN_LINKS = 10_000

SHARED_FULL = (
    "the shared statement store is full: new tokens stay on the replica that made them, and "
    "other replicas answer unknown-prepared-query for them"
)


def _is_full(error: BaseException) -> bool:
    """JetStream refused a record because the bucket is at its size (it discards new ones)."""
    text = str(error).lower()
    return "maximum bytes" in text or "maximum messages" in text or "insufficient" in text


class StatementRegistry:
    """All links' statements; the provider-side half of `prepare` / `exec`.

    With `shared`, records are also saved where every replica of the provider finds them:
    replicas share one queue group, so an `exec` may reach a replica that did not `prepare`.
    """

    def __init__(self, shared: SharedStatements | None = None) -> None:
        self._links: dict[str, LinkStatements] = {}
        self.shared = shared
        self.shared_full = False  # the shared store refuses new records (said once, in health)
        # Deleted links whose shared records are still to be erased (the store was down when
        # they were deleted), oldest first: erased once a delete or share shows it answers.
        self._unforgotten: dict[str, None] = {}
        self.erasing: asyncio.Task[None] | None = None  # that erase, while it runs

    def _statements(self, link: str, max_statements: int) -> LinkStatements:
        """`link`'s statements, bound by its current `max_statements` (a link updated in
        place may have lowered or raised it)."""
        statements = self._links.get(link)
        if statements is None:
            statements = self._links[link] = LinkStatements(max_statements)
        elif statements.max_statements != max_statements:
            statements.max_statements = max_statements
            statements.enforce_bound()
        return statements

    def register(self, link: str, sql: str, max_statements: int) -> tuple[StatementRecord, int]:
        """The record for `sql` on `link`, and how many records the bound evicted."""
        known = self._links.get(link)
        before = 0 if known is None else known.evictions  # lowering the bound evicts too
        statements = self._statements(link, max_statements)
        record = statements.register(sql)
        return record, statements.evictions - before

    def lookup(self, link: str, token: str) -> StatementRecord | None:
        statements = self._links.get(link)
        return None if statements is None else statements.get(token)

    async def share(self, link: str, record: StatementRecord) -> None:
        """Save `record` for the other replicas; drop what this link's bound evicted."""
        statements = self._links.get(link)
        evicted = statements.take_evicted() if statements is not None else []
        if self.shared is None:
            return
        forget_failed: Exception | None = None
        try:  # an evicted token is unknown on every replica; forgetting it first makes room
            while evicted:
                await self.shared.forget(link, evicted[0])
                evicted.pop(0)
        except Exception as exc:
            forget_failed = exc
            if statements is not None:  # forgotten at the next share, not never
                statements.evicted_tokens[:0] = evicted
        try:
            await self.shared.save(link, record.token, record.to_bytes())
        except Exception as exc:  # the token still works on this replica
            if not _is_full(exc):
                log.warning("statement not shared with replicas", extra={"error": str(exc)})
            elif not self.shared_full:
                self.shared_full = True
                log.error(SHARED_FULL, extra={"error": str(exc)})
            return
        if forget_failed is not None:
            log.warning("statement not shared with replicas", extra={"error": str(forget_failed)})
        if self.shared_full:
            self.shared_full = False
            log.info("the shared statement store has room again")
        self._erase_later()

    async def find(self, link: str, token: str, max_statements: int) -> StatementRecord | None:
        """This replica's record, else the one another replica shared (then kept here too)."""
        record = self.lookup(link, token)
        if record is not None or self.shared is None:
            return record
        try:
            data = await self.shared.load(link, token)
        except Exception as exc:
            log.warning("shared statements unavailable", extra={"error": str(exc)})
            return None
        if data is None:
            return None
        try:
            shared = StatementRecord.from_bytes(data)
        except (ValueError, TypeError) as exc:  # e.g. a newer replica's format: unknown here
            log.warning("shared statement record unreadable", extra={"error": str(exc)})
            return None
        if shared.token != token:
            return None
        return self._statements(link, max_statements).adopt(shared)

    def forget_link(self, link: str) -> None:
        self._links.pop(link, None)

    async def forget_shared(self, link: str) -> None:
        """Erase a deleted link's shared records (one request). If the store does not answer,
        they are kept to erase once it does: a record left behind would stay for good."""
        if self.shared is None:
            return
        self._unforgotten.pop(link, None)
        try:
            await self.shared.forget_link(link)
        except Exception as exc:
            log.warning("shared statements not forgotten", extra={"error": str(exc)})
            self._keep_to_erase(link)
            return
        self._erase_later()

    def keep_shared(self, link: str) -> None:
        """`link` is put again: its records are live, no longer to be erased."""
        self._unforgotten.pop(link, None)

    def unforgotten(self) -> int:
        return len(self._unforgotten)

    def _keep_to_erase(self, link: str) -> None:
        self._unforgotten[link] = None
        if len(self._unforgotten) > MAX_UNFORGOTTEN_LINKS:  # the store down for very long
            dropped = next(iter(self._unforgotten))
            del self._unforgotten[dropped]
            log.warning("shared statements of a deleted link left in the store",
                        extra={"link": dropped})  # fmt: skip

    def _erase_later(self) -> None:
        """The store answers again: erase what earlier deletes left, in the background (up
        to thousands of requests, never inside a guest's call)."""
        if self._unforgotten and (self.erasing is None or self.erasing.done()):
            self.erasing = asyncio.get_running_loop().create_task(self._erase_unforgotten())

    async def _erase_unforgotten(self) -> None:
        assert self.shared is not None
        while self._unforgotten:
            link = next(iter(self._unforgotten))
            try:
                await self.shared.forget_link(link)
            except Exception as exc:
                log.warning("shared statements not forgotten", extra={"error": str(exc)})
                return
            self._unforgotten.pop(link, None)

    def count(self, link: str) -> int:
        statements = self._links.get(link)
        return 0 if statements is None else len(statements)
