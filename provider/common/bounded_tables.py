"""Memo tables fed by what components send, kept bounded: a full table is cleared, not grown
(clearing instead of evicting keeps a hit a plain dict lookup, and a hot entry is back after
one miss)."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """`table[key] = value`, the table emptied first when it already holds `limit` entries."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value
