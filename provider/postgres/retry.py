"""What a failed statement means for retrying it (pure functions, no I/O).

- `stale`: PostgreSQL no longer has the prepared statement (SQLSTATE 26000, after a guest's
  DISCARD / DEALLOCATE in any wording), or already has one of its name (42P05: a server
  connection shared behind a pooler). The statement never ran: prepare again (under a new
  name), run again.
- `plan_changed`: "cached plan must not change result type" after DDL. It never ran either.
- `not_sent`: the connection was unusable before anything was sent (asyncpg's
  InternalClientError "cannot switch to state", InterfaceError on a closed connection), or it
  was lost inside a call's own transaction before its COMMIT (`NeverCommitted`, behind a
  pooler). Safe to run on another connection.
- `lost`: the connection died after the statement was sent (the backend was terminated, the
  server went away). A read may run again; a write's outcome is unknown and is not retried.
- `silent`: the connection was dropped because the server stopped answering
  (`socket_liveness`). Nothing is retried: a server that went silent will not answer a new
  connection either, and the call is answered now rather than after another wait.
- `final`: anything else; the guest gets the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from provider.postgres.socket_liveness import went_silent

STALE = "stale"
PLAN_CHANGED = "plan_changed"
NOT_SENT = "not_sent"
LOST = "lost"
SILENT = "silent"
FINAL = "final"

_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,  # 08006
    OSError,
)


@dataclass(frozen=True)
class Decision:
    """What to do after a failed try: run it `again` (on the `same_connection`, after
    preparing again, or on another), with `reason` (one of the kinds above) for the metrics."""

    again: bool
    reason: str
    same_connection: bool = False


def decide(error: BaseException, *, may_repeat: bool, stale_retries_left: bool) -> Decision:
    """The one retry policy. `may_repeat`: running the statement twice is harmless (a plain
    read, or only a prepare was asked for). `stale_retries_left`: preparing again is still
    allowed (a guest that DEALLOCATEs in a loop cannot keep us retrying)."""
    kind = classify(error)
    if kind in (STALE, PLAN_CHANGED):
        return Decision(stale_retries_left, kind, same_connection=True)
    if kind == NOT_SENT:
        return Decision(True, kind)
    if kind == LOST:
        return Decision(may_repeat, kind)
    return Decision(False, kind)  # SILENT, FINAL


def is_lost(error: BaseException) -> bool:
    """The session the error came from is gone (or unusable): whatever it held, an open
    transaction included, is rolled back by PostgreSQL."""
    return classify(error) in (LOST, SILENT, NOT_SENT)


class NeverCommitted(Exception):
    """The connection was lost inside the call's own transaction, before its COMMIT was sent:
    PostgreSQL rolled it back, so nothing of it happened."""


def classify(error: BaseException) -> str:
    if isinstance(
        error,
        asyncpg.exceptions.InvalidSQLStatementNameError
        | asyncpg.exceptions.DuplicatePreparedStatementError,
    ):
        return STALE
    if isinstance(error, NeverCommitted):
        return NOT_SENT
    if isinstance(error, asyncpg.exceptions.InvalidCachedStatementError):
        return PLAN_CHANGED  # asyncpg's name for "cached plan must not change result type"
    if isinstance(error, asyncpg.exceptions.FeatureNotSupportedError) and (
        "cached plan must not change result type" in error.as_dict().get("message", "")
    ):
        return PLAN_CHANGED
    if isinstance(error, asyncpg.exceptions.DataError):
        return FINAL  # a parameter asyncpg could not encode: the guest's to fix
    if went_silent(error):
        return SILENT
    if isinstance(error, _LOST) or _session_ended(error):
        return LOST
    if isinstance(
        error, asyncpg.exceptions.InternalClientError | asyncpg.exceptions.InterfaceError
    ):
        return NOT_SENT
    return FINAL


def _session_ended(error: BaseException) -> bool:
    """The server ended the session: 57P (operator intervention: terminated, shut down,
    cannot connect now, database dropped, idle session timeout) or class 08 (connection
    exception)."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    return isinstance(sqlstate, str) and sqlstate.startswith(("57P", "08"))


_COMMENTS = re.compile(r"(--[^\n]*\n?|/\*.*?\*/|\s|\()+", re.S)
_WRITES = re.compile(r"\b(insert|update|delete|merge|into|call|do|copy|create|alter|drop)\b", re.I)
_READ_STARTS = ("select", "values", "table", "show", "with")


# Matched from the start only: a long statement costs no more than a short one, and the word
# ends where a name does (`COMMIT;`, `SELECT*FROM t`).
_FIRST_WORD = re.compile(r"(?:--[^\n\r]*|/\*.*?\*/|\s|\()*([A-Za-z_]\w*)", re.S)


def first_keyword(sql: str) -> str:
    """The statement's first word, lower-cased, past comments and parentheses."""
    match = _FIRST_WORD.match(sql)
    return match.group(1).lower() if match else ""


def is_read_only(sql: str) -> bool:
    """True for statements that can be run twice without effect: plain reads.

    Conservative by construction: it must start like a read and mention no writing keyword
    anywhere (`SELECT ... INTO` creates a table; a data-modifying CTE writes). A read that
    calls a volatile function with side effects (nextval, a function that writes) is the one
    case this cannot see; such a call may run twice if its connection dies mid-flight.
    """
    text = _COMMENTS.sub(" ", sql).strip().lower()
    if not text.startswith(_READ_STARTS):
        return False
    return _WRITES.search(text) is None


_CALLS = re.compile(r"\b([a-z_][a-z0-9_]*)\s*\(", re.I)
# Words that may stand before "(" in a read without calling anything that could change state:
# SQL's own syntax and built-in functions without side effects. Anything else (nextval, a
# user's function, which may write) makes `may_read_twice` False.
_SIDE_EFFECT_FREE = frozenset(
    """
    select from where and or not in any all some exists values as on using join by having
    over filter within partition when then else case is between like ilike similar row array
    cast coalesce nullif greatest least count sum avg min max bool_and bool_or every
    array_agg string_agg json_agg jsonb_agg json_build_object jsonb_build_object
    json_build_array jsonb_build_array to_json to_jsonb row_to_json lower upper length
    char_length octet_length substring substr position trim btrim ltrim rtrim concat concat_ws
    replace split_part left right abs round trunc floor ceil ceiling mod power sqrt
    now current_timestamp date_trunc date_part extract to_char to_date to_timestamp age
    generate_series unnest array_length cardinality md5 encode decode format numeric int int4
    int8 text varchar timestamp timestamptz date interval decimal float8 bigint integer
    """.split()  # noqa: SIM905 - a word list reads better than 120 quoted strings
)


def may_read_twice(sql: str) -> bool:
    """True for a plain read (`is_read_only`) that calls nothing able to change state: one
    whose first run may be stopped after a few rows and run again whole, with the same effect
    as a single run (none). Conservative: an unknown function name makes it False."""
    if not is_read_only(sql):
        return False
    text = _COMMENTS_ONLY.sub(" ", sql)
    if _QUOTED_CALL.search(text):
        return False  # "a quoted name"(...) is a function we cannot name here
    return all(name.lower() in _SIDE_EFFECT_FREE for name in _CALLS.findall(text))


_QUOTED_CALL = re.compile(r'"\s*\(')
_COMMENTS_ONLY = re.compile(r"--[^\n]*\n?|/\*.*?\*/|'(?:[^']|'')*'", re.S)  # and literals
