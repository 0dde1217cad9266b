"""What a span may say of a statement (sans-IO): its SQL with every literal replaced by `?`,
comments dropped, secrets redacted, at most `MAX_QUERY_TEXT` characters; and an error's text
with its quoted parts (values, in PostgreSQL's and asyncpg's messages) replaced the same way.

OpenTelemetry's database conventions collect `db.query.text` for SQL that is not
parameterized only once its literals are sanitized: a `query-batch` of `ALTER ROLE app PASSWORD
'…'`, or a key passed to `pgp_sym_encrypt`, must not reach a collector. Parameter markers
(`$1`), identifiers and quoted identifiers stay as they are. Where the text could be read two
ways (a backslash in a plain literal means an escape when `standard_conforming_strings` is off;
a nested comment), everything from there on becomes `?`: it fails closed.
"""

from __future__ import annotations

import re

from provider.common.bounded_tables import remember
from provider.common.redaction import SecretRedactor

# Collectors refuse requests of a few MiB, and a span batch holds up to 512 spans.
MAX_QUERY_TEXT = 2048
# Only this much of a statement is read: more than the span keeps, so a literal open at the
# cut is still seen (and replaced) as one.
READ = 2 * MAX_QUERY_TEXT
_REMEMBERED = 1024  # sanitized texts kept (hot statements repeat), each at most READ long

_NAME = r"[A-Za-z_\u0080-\U0010ffff]"  # PostgreSQL: any non-ASCII character is a letter
_NAME_OR_DIGIT = r"[A-Za-z0-9_$\u0080-\U0010ffff]"
_TOKENS = re.compile(
    rf"""
      (?P<identifier>"(?:[^"]|"")*"?)                       # "quoted identifier": kept
    | (?P<comment>--[^\n\r]*)                               # a line comment: dropped
    | (?P<block>/\*(?:[^*/]|\*(?!/)|/(?!\*))*(?:\*/|\Z))    # /* … */ without a nested /*
    | (?P<nested>/\*.*)                                     # a nested one: all the rest
    | \$(?P<tag>(?:{_NAME}{_NAME_OR_DIGIT}*)?)\$.*?(?:\$(?P=tag)\$|\Z)  # $$…$$, $tag$…$tag$
    | (?<!{_NAME_OR_DIGIT})[Ee]'(?:[^'\\]|\\(?:.|\Z)|'')*(?:'|\Z)  # E'…', backslash escapes
    | (?P<plain>(?:(?<!{_NAME_OR_DIGIT})(?:[BbXxNn]|[Uu]&))?'(?:[^']|'')*(?:'|\Z))
    | (?<![A-Za-z0-9_$.\u0080-\U0010ffff])\.?\d(?:[A-Za-z0-9_.\u0080-\U0010ffff]|(?<=[eE])[+-])*
    """,
    re.VERBOSE | re.DOTALL,
)
_QUOTED = re.compile(r"'[^']*(?:'|$)|\"[^\"]*(?:\"|$)")
_seen: dict[str, str] = {}


def sanitized(sql: str) -> str:
    """`sql` with its literals as `?` and its comments gone (fails closed: see above)."""
    found = _seen.get(sql)
    if found is None:
        found = _sanitize(sql)
        if len(sql) <= READ:
            remember(_seen, sql, found, _REMEMBERED)
    return found


def _sanitize(sql: str) -> str:
    out, position = [], 0
    for match in _TOKENS.finditer(sql):
        out.append(sql[position : match.start()])
        position = match.end()
        if match.group("identifier") is not None:
            out.append(match.group(0))
        elif match.group("comment") is not None or match.group("block") is not None:
            out.append(" ")
        elif match.group("nested") is not None:
            out.append(" ?")
            return "".join(out)
        elif (plain := match.group("plain")) is not None and "\\" in plain and "&" not in plain:
            out.append("?")  # an escape or not, depending on a setting: the rest is unknown
            return "".join(out)
        else:
            out.append("?")
    out.append(sql[position:])
    return "".join(out)


def query_text(sql: str, redactor: SecretRedactor) -> str:
    """What `db.query.text` says: the start of `sql` sanitized, then redacted (secrets are
    known late, so that is never cached), then cut."""
    if len(sql) <= READ:
        return redactor.redact(sanitized(sql))[:MAX_QUERY_TEXT]
    text = sanitized(sql[:READ])
    # The read stopped inside the statement: a secret running across that point would show
    # its first half unredacted, so the end of the read is left out.
    text = text[: max(0, len(text) - redactor.longest)]
    return redactor.redact(text)[:MAX_QUERY_TEXT]


def error_text(error: BaseException, redactor: SecretRedactor) -> str:
    """An error's message for a span's status: quoted parts (the values PostgreSQL and asyncpg
    quote: `invalid input syntax for type integer: "hunter2"`) as `?`, secrets redacted."""
    return redactor.redact(_QUOTED.sub("?", str(error)[:1000]))[:200]
