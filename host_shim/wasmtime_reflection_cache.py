"""Remember wasmtime-py's type reflection instead of redoing it for every value of every call.

Stock wasmtime-py 50 rebuilds a host function's type from the C API on each call and, while
converting every value, asks each variant type for its cases again (one FFI round trip per
case: 97 for a pg-value) and recomputes whether it is tagged. Here a measured `run` of the
example component spent 80% of its time in `VariantType.cases`.

`install()` wraps those reflective properties so that a type equal (by wasmtime's own type
equality) to one seen before returns the remembered answer. This relies on wasmtime-py's
internals, so the wasmtime version is pinned in pyproject.toml (`>=50,<51`) and
`tests/test_component.py` checks the cache is active and changes no result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def install() -> None:
    """Idempotent; affects every component loaded in this process."""
    global _installed
    if _installed:
        return
    for cls, name in _CACHED_PROPERTIES:
        original = getattr(cls, name)
        setattr(cls, name, property(_remembering(original.fget)))
    VariantLikeType._tagged = _remembering(VariantLikeType._tagged)  # type: ignore[method-assign,assignment]
    _installed = True


def installed() -> bool:
    return _installed
