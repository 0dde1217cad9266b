"""The prepared-statement registry: opaque tokens → statement records, scoped per link.

A token is 128 random bits from a CSPRNG; it means something only to the link (source
component) that prepared it, so another component presenting it gets `unknown-prepared-query`.
The record holds the SQL text, which any connection of the link's pool can prepare again: the
token is never tied to one connection. Preparing the same SQL twice on one link returns the
same token. Each link keeps at most `max_statements` records; at the bound the least recently
used record is dropped (its token becomes unknown).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatementRecord:
    token: str
    sql: str


class LinkStatements:
    """One link's statements, least recently used first."""

    def __init__(self, max_statements: int) -> None:
        self.max_statements = max_statements
        self._by_token: OrderedDict[str, StatementRecord] = OrderedDict()
        self._token_by_sql: dict[str, str] = {}
        self.evictions = 0

    def register(self, sql: str) -> StatementRecord:
        token = self._token_by_sql.get(sql)
        if token is not None:
            self._by_token.move_to_end(token)
            return self._by_token[token]
        record = StatementRecord(f"pstmt-{secrets.token_urlsafe(16)}", sql)
        self._by_token[record.token] = record
        self._token_by_sql[sql] = record.token
        while len(self._by_token) > self.max_statements:
            _, evicted = self._by_token.popitem(last=False)
            del self._token_by_sql[evicted.sql]
            self.evictions += 1
        return record

    def get(self, token: str) -> StatementRecord | None:
        record = self._by_token.get(token)
        if record is not None:
            self._by_token.move_to_end(token)
        return record

    def __len__(self) -> int:
        return len(self._by_token)


class StatementRegistry:
    """All links' statements; the provider-side half of `prepare` / `exec`."""

    def __init__(self) -> None:
        self._links: dict[str, LinkStatements] = {}

    def register(self, link: str, sql: str, max_statements: int) -> StatementRecord:
        statements = self._links.get(link)
        if statements is None:
            statements = self._links[link] = LinkStatements(max_statements)
        return statements.register(sql)

    def lookup(self, link: str, token: str) -> StatementRecord | None:
        statements = self._links.get(link)
        return None if statements is None else statements.get(token)

    def forget_link(self, link: str) -> None:
        self._links.pop(link, None)

    def count(self, link: str) -> int:
        statements = self._links.get(link)
        return 0 if statements is None else len(statements)
