"""A statement's SQL as a span may carry it (sans-IO): every literal replaced by `?`, comments
dropped, secrets redacted, at most `MAX_QUERY_TEXT` characters.

OpenTelemetry's database conventions collect `db.query.text` for SQL that is not
parameterized only once its literals are sanitized: a `query-batch` of `ALTER ROLE app PASSWORD
'…'`, or a key passed to `pgp_sym_encrypt`, must not reach a collector. Parameter markers
(`$1`), identifiers and quoted identifiers stay as they are.
"""

from __future__ import annotations

import re

from provider.redaction import secret_redactor

# Collectors refuse requests of a few MiB, and a span batch holds up to 512 spans.
MAX_QUERY_TEXT = 2048
_REMEMBERED = 4096  # distinct SQL texts sanitized once and kept (hot statements repeat)
_REMEMBERED_LENGTH = 4096

_TOKENS = re.compile(
    r"""
      (?P<identifier>"(?:[^"]|"")*")                        # "quoted identifier": kept
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))                # comments: dropped
    | \$(?P<tag>(?:[^\W\d]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z)    # $$…$$, $tag$…$tag$
    | (?<!\w)[Ee]'(?:[^'\\]|\\.|'')*(?:'|\Z)                # E'…' (backslash escapes)
    | (?<!\w)(?:[BbXxNn]|[Uu]&)?'(?:[^']|'')*(?:'|\Z)       # '…', B'…', X'…', N'…', U&'…'
    | (?<![\w$.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?       # numbers, not $1 or t1
    """,
    re.VERBOSE | re.DOTALL,
)
_seen: dict[str, str] = {}


def _replace(match: re.Match[str]) -> str:
    if match.group("identifier") is not None:
        return match.group(0)
    if match.group("comment") is not None:
        return " "
    return "?"


def sanitized(sql: str) -> str:
    """`sql` with its literals as `?` and its comments gone."""
    found = _seen.get(sql)
    if found is None:
        found = _TOKENS.sub(_replace, sql)
        if len(sql) <= _REMEMBERED_LENGTH:
            if len(_seen) >= _REMEMBERED:
                _seen.clear()
            _seen[sql] = found
    return found


def query_text(sql: str) -> str:
    """What `db.query.text` says: sanitized, then redacted (secrets are known late, so never
    cached), then cut."""
    return secret_redactor.redact(sanitized(sql))[:MAX_QUERY_TEXT]
