"""How WIT values look in Python, for the codec and everything above it.

| WIT | Python |
|---|---|
| bool | `bool` |
| u8 … u64, s8 … s64 | `int` (range checked when encoding) |
| f32, f64 | `float` |
| char, string | `str` |
| list<u8> | `bytes` (the fast path) |
| list<T> | `list` |
| tuple<…> | `tuple` |
| record | `dict` keyed by the WIT field names (kebab-case), in declaration order |
| variant | `Case(tag, value)`; `value` is `None` for a case without payload |
| enum | the case name, `str` |
| flags | `frozenset[str]` of the set flag names |
| option<T> | `None` or the value |
| result<T, E> | `Ok(value)` or `Err(value)`; `value` is `None` when that side has no type |

A `list<T>` may also be an `EncodedList`: items encoded already (e.g. rows encoded batch by
batch as they come from the database), which the encoder writes as they are.

A `pg-value` is a `Case`: `Case("int4", 17)`, `Case("text", "hi")`, `Case("null")`,
`Case("float8", (6755399441055744, -52, 1))` (hashable-f64 = (mantissa, exponent, sign)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


class Case(NamedTuple):
    """One case of a WIT variant: its kebab-case name and its payload (or `None`)."""

    tag: str
    value: Any = None


PgValue = Case
"""A `wasmcloud:postgres/types.pg-value`: `Case(<case name>, <payload>)`."""


@dataclass(frozen=True, slots=True)
class Ok:
    """The `ok` side of a WIT `result`."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Err:
    """The `err` side of a WIT `result`."""

    value: Any = None


Result = Ok | Err


@dataclass(frozen=True, slots=True)
class EncodedList:
    """A `list<T>` whose `count` items are already encoded: the concatenation of `chunks`."""

    count: int
    chunks: tuple[bytes, ...]
