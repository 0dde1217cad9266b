"""Which failures may be retried (pure classification, no server)."""

from __future__ import annotations

import asyncpg
import pytest

from provider.postgres import retry


def postgres_error(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls.new({"M": message, "S": "ERROR", "C": cls.sqlstate or "XX000"})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (postgres_error(asyncpg.exceptions.InvalidSQLStatementNameError, 'prepared statement "s1" does not exist'), retry.STALE),
        (postgres_error(asyncpg.exceptions.FeatureNotSupportedError, "cached plan must not change result type"), retry.PLAN_CHANGED),
        (postgres_error(asyncpg.exceptions.FeatureNotSupportedError, "something else"), retry.FINAL),
        (asyncpg.exceptions.InternalClientError("cannot switch to state 15"), retry.NOT_SENT),
        (asyncpg.exceptions.InterfaceError("connection is closed"), retry.NOT_SENT),
        (asyncpg.exceptions.DataError("invalid input for query argument $1"), retry.FINAL),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed in the middle"), retry.LOST),
        (postgres_error(asyncpg.exceptions.AdminShutdownError, "terminating connection"), retry.LOST),
        (ConnectionResetError(), retry.LOST),
        (postgres_error(asyncpg.exceptions.UniqueViolationError, "duplicate key"), retry.FINAL),
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
