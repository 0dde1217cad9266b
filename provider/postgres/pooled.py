"""One call behind a transaction-mode pooler: its own transaction, nothing left on the server.

Such a pooler (PgBouncer, Supavisor, ... with `pool_mode = transaction`) may hand each
transaction, and each protocol exchange ending in a Sync outside one, to another server
connection, which other clients share. So a call here:
- opens a transaction whose first message also sets the session it expects (`session`), so the
  pooler keeps one server connection for the whole call and no setting leaks to other clients;
- prepares its statement unnamed, inside that transaction (`fresh_statement`): no name exists
  on the server to be missing (26000) or taken (42P05), and no other client's statement can be
  bound in its place;
- ends with the session reset and COMMIT in one simple query (or ROLLBACK and the reset after
  a failure): whatever the guest's statement left in the session — a setting, a temporary
  table, an advisory lock, a LISTEN — is gone before the pooler hands the server connection
  to another client, at no extra round trip.
A connection lost before COMMIT was sent rolled the call back: `NeverCommitted` says so, and
the caller may run it again anywhere, writes too.

A guest's `query-batch` is one simple query, so it runs on one server connection as it is: the
session's settings go in front of it (PostgreSQL bounds each statement) and the session reset
after it (`with_session_reset`), so what the batch SET, LISTENed or created as temporary is gone
before the pooler hands the server connection to another client. A batch that is a single
statement which cannot run in a transaction block (`single_statement_alone`: DISCARD ALL,
VACUUM) is sent as it is.

A CALL runs in the call's transaction like any statement; a procedure that commits is refused
there (2D000, rolled back) and then runs alone. A few statements cannot run inside a
transaction block (VACUUM, DISCARD ALL, CREATE INDEX CONCURRENTLY): they run alone
(`runs_alone`), still on one server connection (asyncpg sends Parse/Describe without a Sync,
then Bind/Execute/Sync), and the statement timeout is then the client's: asyncpg sends a
cancel request, which the pooler forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from provider.postgres import retry
from provider.postgres.config import ConnectionSettings
from provider.postgres.session import pooled_begin

_ALONE_FIRST_WORDS = frozenset({"call", "vacuum", "discard", "checkpoint"})
_ALONE_PHRASES = re.compile(
    r"\b(concurrently|database|tablespace|system|subscription)\b|^\s*(reindex|cluster)\b",
    re.I,
)


def runs_alone(sql: str) -> bool:
    """A statement PostgreSQL may refuse inside a transaction block (or that may end one)."""
    word = retry.first_keyword(sql)
    if word in _ALONE_FIRST_WORDS:
        return True
    return word in ("create", "drop", "alter", "reindex", "cluster") and bool(
        _ALONE_PHRASES.search(sql[:4096])
    )


def with_session_reset(batch: str, reset: str) -> str:
    """`batch` followed by `reset` in the same simple query (a newline first: the batch may
    end inside a `--` comment). A batch that ends inside a block comment or a quote fails
    whole, as it would alone."""
    return f"{batch}\n;{reset}"


def may_run_in_block(sql: str) -> bool:
    """A CALL: run inside the call's transaction, with the session's settings, unless its
    procedure commits (PostgreSQL refuses that with 2D000, and then it runs alone)."""
    return retry.first_keyword(sql) == "call"


def harmless_to_repeat(sql: str) -> bool:
    """A statement that changes no data (a read, VACUUM, DISCARD, CHECKPOINT, ...): stopped by
    the client's timeout, it is as if it never ran."""
    word = retry.first_keyword(sql)
    return retry.is_read_only(sql) or word in ("vacuum", "discard", "checkpoint", "analyze")


def statement_timeout_error() -> Exception:
    """The error PostgreSQL gives when its statement_timeout fires, for the client's own."""
    fields = {"S": "ERROR", "C": "57014", "M": "canceling statement due to statement timeout"}
    error: Exception = asyncpg.exceptions.PostgresError.new(fields)
    return error


@contextlib.asynccontextmanager
async def call_transaction(connection: Any, settings: ConnectionSettings) -> AsyncIterator[None]:
    """The call's own transaction (see the module's docstring); yields once it is open."""
    try:
        await connection.execute(pooled_begin(settings))
    except Exception as exc:  # nothing of the call was sent
        _raise_if_lost(exc)
        raise
    try:
        yield
    except BaseException as exc:
        await _roll_back(connection)
        if isinstance(exc, Exception):
            _raise_if_lost(exc)
        raise
    try:
        await connection.execute(commit_with_reset(connection))
    except asyncpg.PostgresError:
        raise  # refused (a deferred constraint, a serialization failure): rolled back
    except BaseException:
        connection.terminate()  # a COMMIT whose answer never came: the outcome is unknown
        raise


def _raise_if_lost(error: Exception) -> None:
    """A connection lost before COMMIT was sent rolled everything back: say so."""
    if retry.classify(error) == retry.LOST:
        raise retry.NeverCommitted(str(error)) from error


def commit_with_reset(connection: Any) -> str:
    """The session reset, then COMMIT: one message, one server connection."""
    connection.session_dirty = False
    return f"{connection.get_reset_query()} COMMIT"


def rollback_with_reset(connection: Any) -> str:
    """ROLLBACK, then the session reset (a lock taken with pg_advisory_lock outlives it)."""
    connection.session_dirty = False
    return f"ROLLBACK; {connection.get_reset_query()}"


def single_statement_alone(batch: str) -> bool:
    """A batch that is one statement which cannot run in a transaction block (DISCARD ALL,
    VACUUM, ...): sent as it is. Any `;` inside makes it a batch that gets the reset."""
    return runs_alone(batch) and ";" not in batch.strip().rstrip(";")


async def _roll_back(connection: Any) -> None:
    if connection.is_closed():
        return
    try:
        await asyncio.wait_for(connection.execute(rollback_with_reset(connection)), 5)
    except Exception:
        connection.terminate()  # its session state is unknown: never hand it out again
    except BaseException:
        connection.terminate()
        raise
