"""Which failures may be retried (pure classification, no server)."""

from __future__ import annotations

import errno

import asyncpg
import pytest

from provider.postgres import retry
from provider.postgres.socket_liveness import went_silent


def pg(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls.new({"M": message, "S": "ERROR", "C": cls.sqlstate or "XX000"})


X = asyncpg.exceptions


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (pg(X.InvalidSQLStatementNameError, 'prepared statement "s1" does not exist'), retry.STALE),
        (pg(X.FeatureNotSupportedError, "cached plan must not change result type"), "plan_changed"),
        (pg(X.FeatureNotSupportedError, "something else"), retry.FINAL),
        (X.InternalClientError("cannot switch to state 15"), retry.NOT_SENT),
        (X.InterfaceError("connection is closed"), retry.NOT_SENT),
        (X.DataError("invalid input for query argument $1"), retry.FINAL),
        (X.ConnectionDoesNotExistError("closed in the middle"), retry.LOST),
        (pg(X.AdminShutdownError, "terminating connection"), retry.LOST),
        (ConnectionResetError(), retry.LOST),
        (pg(X.UniqueViolationError, "duplicate key"), retry.FINAL),
    ],
)  # fmt: skip
def test_classify(error: BaseException, kind: str) -> None:
    assert retry.classify(error) == kind


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT * FROM t", True),
        ("  -- comment\n (SELECT 1)", True),
        ("/* c */ values (1)", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("show server_version", True),
        ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", False),
        ("SELECT * INTO copy FROM t", False),
        ("INSERT INTO t VALUES (1)", False),
        ("update t set x = 1", False),
        ("CALL proc()", False),
    ],
)
def test_is_read_only(sql: str, read_only: bool) -> None:
    assert retry.is_read_only(sql) is read_only


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("CALL p(1)", "call"),
        ("  /* audit */ -- why\n call p(1)", "call"),
        ("(SELECT 1)", "select"),
        ("", ""),
    ],
)
def test_the_first_keyword_is_read_past_comments(sql: str, keyword: str) -> None:
    assert retry.first_keyword(sql) == keyword


def test_reads_that_may_run_twice() -> None:
    from provider.postgres.retry import may_read_twice

    assert may_read_twice("SELECT id, name FROM t WHERE id <= $1 ORDER BY id")
    assert may_read_twice("SELECT count(*), max(x) FROM t WHERE id IN (1, 2)")
    assert may_read_twice("WITH a AS (SELECT 1) SELECT * FROM a")
    assert may_read_twice("SELECT 'nextval(' FROM t -- f(x)")  # literals and comments
    for sql in (
        "SELECT nextval('s')",  # a side effect
        "SELECT audit_row(id) FROM t",  # a user's function may write
        'SELECT "count"(1)',  # a quoted name we cannot judge
        "SELECT public.count_rows()",
        "INSERT INTO t VALUES (1) RETURNING id",
        "SELECT * FROM t FOR UPDATE",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    ):
        assert not may_read_twice(sql), sql


@pytest.mark.parametrize(
    ("error", "may_repeat", "left", "expected"),
    [
        (pg(X.InvalidSQLStatementNameError, "gone"), False, True,
         retry.Decision(True, retry.STALE, same_connection=True)),
        (pg(X.InvalidSQLStatementNameError, "gone"), True, False,
         retry.Decision(False, retry.STALE, same_connection=True)),  # prepared again enough
        (pg(X.FeatureNotSupportedError, "cached plan must not change result type"), False, True,
         retry.Decision(True, retry.PLAN_CHANGED, same_connection=True)),
        (X.InterfaceError("connection is closed"), False, False,
         retry.Decision(True, retry.NOT_SENT)),
        (retry.NeverCommitted(), False, False, retry.Decision(True, retry.NOT_SENT)),
        (X.ConnectionDoesNotExistError("closed"), True, False, retry.Decision(True, retry.LOST)),
        (X.ConnectionDoesNotExistError("closed"), False, True, retry.Decision(False, retry.LOST)),
        (pg(X.UniqueViolationError, "duplicate key"), True, True,
         retry.Decision(False, retry.FINAL)),
    ],
)  # fmt: skip
def test_the_one_retry_policy(
    error: BaseException, may_repeat: bool, left: bool, expected: retry.Decision
) -> None:
    assert retry.decide(error, may_repeat=may_repeat, stale_retries_left=left) == expected


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (pg(X.AdminShutdownError, "terminating connection due to administrator command"), True),
        (pg(X.IdleSessionTimeoutError, "terminating connection due to idle-session timeout"), True),
        (pg(X.ProtocolViolationError, "protocol violation"), True),  # 08P01: the server hangs up
        (X.InterfaceError("connection is closed"), True),
        (ConnectionResetError(), True),
        (pg(X.QueryCanceledError, "canceling statement due to statement timeout"), False),
        (pg(X.SerializationError, "could not serialize access"), False),
        (pg(X.UniqueViolationError, "duplicate key"), False),
    ],
)
def test_is_lost_means_the_session_is_gone(error: BaseException, lost: bool) -> None:
    """One answer for the runner, the transactions and the retry policy alike."""
    assert retry.is_lost(error) is lost


def _dropped_for_silence() -> BaseException:
    """What asyncpg raises when the kernel dropped the socket (keepalive, user timeout)."""
    error = X.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    error.__cause__ = TimeoutError(errno.ETIMEDOUT, "Connection timed out")
    return error


def test_a_connection_dropped_for_silence_is_never_retried_but_is_lost() -> None:
    error = _dropped_for_silence()
    assert retry.classify(error) == retry.SILENT
    assert went_silent(error) and retry.is_lost(error)
    for may_repeat in (True, False):
        decision = retry.decide(error, may_repeat=may_repeat, stale_retries_left=True)
        assert decision == retry.Decision(False, retry.SILENT)
    # A loud loss (a reset, a terminated backend) and asyncio's own timeout are not silence.
    assert not went_silent(X.ConnectionDoesNotExistError("closed"))
    assert not went_silent(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert not went_silent(TimeoutError())
