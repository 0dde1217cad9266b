"""Secret values never leave the provider: whatever came from a secret is redacted in every log
line, health message and error text.

HostData's values are remembered for the life of the process; a link's, while the link holds
them, and then among the last `MAX_RELEASED` values released (a rotated secret's old value,
or a deleted link's, stays redacted while a late error may still quote it) — so component
churn, each deployment with a password of its own, cannot grow the pattern every log line
goes through. Values of eight characters or more are redacted wherever they appear; shorter ones
(a port, a database name kept in a secret) only as whole words, so they do not blank every
word that holds their letters; values of one to three characters, which no credential is and
which would garble every message, are not redacted.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from provider.wit.values import Case, Err, Ok

REDACTED = "[redacted]"
WHOLE_WORD_BELOW = 8
SHORTEST_REDACTED = 4
# Values no link holds any more that are still redacted (the newest released): enough for
# late errors of links just deleted or rotated, few enough that the pattern every log line
# goes through (compiled again at each change) stays the live links' size.
MAX_RELEASED = 64


class SecretRedactor:
    """One per process, made by the entry point and handed to every door text leaves by (the
    log handler, the hooks' answers, spans); the runtime adds secrets as links bring them."""

    def __init__(self) -> None:
        self._permanent: set[str] = set()
        self._held: dict[Hashable, frozenset[str]] = {}
        self._released: OrderedDict[str, None] = OrderedDict()
        self._values: set[str] = set()  # what the pattern redacts: all of the above
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0  # characters of the longest value (what a cut text may split)

    def add(self, values: Iterable[str]) -> None:
        """Values redacted for the life of the process (HostData's)."""
        self._permanent |= _redactable(values)
        self._rebuild()

    def hold(self, owner: Hashable, values: Iterable[str]) -> None:
        """`owner`'s values (a link's secrets) are now exactly `values`; those it held before
        and no longer does are released."""
        values = frozenset(_redactable(values))
        before = self._held.get(owner, frozenset())
        if values:
            self._held[owner] = values
        else:
            self._held.pop(owner, None)
        self._release(before - values)

    def release(self, owner: Hashable) -> None:
        """`owner` is gone (its link deleted): its values are released."""
        self._release(self._held.pop(owner, frozenset()))

    def remembered(self) -> int:
        """How many values are redacted now."""
        return len(self._values)

    def _release(self, values: Iterable[str]) -> None:
        for value in values:
            self._released.pop(value, None)
            self._released[value] = None
        while len(self._released) > MAX_RELEASED:
            self._released.popitem(last=False)
        self._rebuild()

    def _rebuild(self) -> None:
        values = self._permanent.union(self._released, *self._held.values())
        if values == self._values:
            return
        self._values = values
        self.longest = max((len(value) for value in values), default=0)
        # Longest first: a secret that contains another is redacted whole.
        alternatives = [
            re.escape(value) if len(value) >= WHOLE_WORD_BELOW else rf"\b{re.escape(value)}\b"
            for value in sorted(values, key=len, reverse=True)
        ]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def redact_value(self, value: Any) -> Any:
        """Strings inside WIT values (Case payloads, Ok/Err, tuples, lists) redacted."""
        if self._pattern is None:
            return value
        return _walk(value, self.redact)


def _redactable(values: Iterable[str]) -> set[str]:
    return {value for value in values if len(value) >= SHORTEST_REDACTED}


def _walk(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Err):
        return Err(_walk(value.value, redact))
    if isinstance(value, Ok):
        return value  # results are the guest's own data, not our error texts
    if isinstance(value, Case):
        return Case(value.tag, _walk(value.value, redact))
    if isinstance(value, tuple):
        return tuple(_walk(item, redact) for item in value)
    return value
