"""Secret values never leave the provider: whatever came from a secret is redacted in every log
line, health message and error text.

Values are remembered for the life of the process (a rotated secret's old value stays
redacted). Values of eight characters or more are redacted wherever they appear; shorter ones
(a port, a database name kept in a secret) only as whole words, so they do not blank every
word that holds their letters; values of one to three characters, which no credential is and
which would garble every message, are not redacted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from provider.wit.values import Case, Err, Ok

REDACTED = "[redacted]"
WHOLE_WORD_BELOW = 8
SHORTEST_REDACTED = 4


class SecretRedactor:
    """One per process, made by the entry point and handed to every door text leaves by (the
    log handler, the hooks' answers, spans); the runtime adds secrets as links bring them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.longest = 0  # characters of the longest value (what a cut text may split)

    def add(self, values: Iterable[str]) -> None:
        new = {
            value
            for value in values
            if len(value) >= SHORTEST_REDACTED and value not in self._values
        }
        if not new:
            return
        self._values |= new
        self.longest = max(self.longest, *(len(value) for value in new))
        # Longest first: a secret that contains another is redacted whole.
        alternatives = [
            re.escape(value) if len(value) >= WHOLE_WORD_BELOW else rf"\b{re.escape(value)}\b"
            for value in sorted(self._values, key=len, reverse=True)
        ]
        self._pattern = re.compile("|".join(alternatives))

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def redact_value(self, value: Any) -> Any:
        """Strings inside WIT values (Case payloads, Ok/Err, tuples, lists) redacted."""
        if self._pattern is None:
            return value
        return _walk(value, self.redact)


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
