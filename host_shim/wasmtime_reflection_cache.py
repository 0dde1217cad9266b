"""Remember wasmtime-py's type reflection instead of redoing it for every value of every call.

Stock wasmtime-py 50 rebuilds a host function's type from the C API on each call and, while
converting every value, asks each variant type for its cases again (one FFI round trip per
case: 97 for a pg-value) and recomputes whether it is tagged. Here a measured `run` of the
example component spent 80% of its time in `VariantType.cases`.

`install()` wraps those reflective properties so that a type equal (by wasmtime's own type
equality) to one seen before returns the remembered answer. This relies on wasmtime-py's
internals, so the wasmtime version is pinned in pyproject.toml (`>=50,<51`) and
`tests/e2e/test_component.py` checks the cache is active and changes no result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import wasmtime.component._types as wasmtime_types
from wasmtime.component import ListType, OptionType, RecordType, ResultType, TupleType, VariantType
from wasmtime.component._types import VariantLikeType

_installed = False
_CACHED_PROPERTIES: tuple[tuple[type, str], ...] = (
    (VariantType, "cases"),
    (RecordType, "fields"),
    (TupleType, "elements"),
    (ListType, "element"),
    (OptionType, "payload"),
    (ResultType, "ok"),
    (ResultType, "err"),
)


def _remembering(compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    seen: list[tuple[Any, Any]] = []  # (type, answer); the type is kept alive with its answer

    def remembered(self: Any) -> Any:
        for known, answer in seen:
            if known is self or known == self:
                return answer
        answer = compute(self)
        seen.append((self, answer))
        return answer

    remembered.cache = seen  # type: ignore[attr-defined]
    return remembered


class ThreadLocalClassSet:
    """wasmtime-py lowers an untagged variant or result by filling one module-level set with
    the Python classes of a case, then testing the value against it: two threads lowering at
    once (concurrent invocations, each in its own Store) race on that set and pick the wrong
    case ("expected list value" for an `err`). This gives each thread its own set."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _set(self) -> set[type]:
        found: set[type] | None = getattr(self._local, "classes", None)
        if found is None:
            found = self._local.classes = set()
        return found

    def clear(self) -> None:
        self._set().clear()

    def add(self, cls: type) -> None:
        self._set().add(cls)

    def __iter__(self) -> Iterator[type]:
        return iter(self._set())


def install() -> None:
    """Idempotent; affects every component loaded in this process."""
    global _installed
    if _installed:
        return
    wasmtime_types.case_test_cache = ThreadLocalClassSet()  # type: ignore[assignment]
    for cls, name in _CACHED_PROPERTIES:
        original = getattr(cls, name)
        setattr(cls, name, property(_remembering(original.fget)))
    VariantLikeType._tagged = _remembering(VariantLikeType._tagged)  # type: ignore[method-assign,assignment]
    _installed = True


def installed() -> bool:
    return _installed
