"""The pooler path's pure parts: settings as SQL, what runs alone, the link key, retry kinds."""

from __future__ import annotations

import asyncpg
import pytest

from provider.postgres import pooled, retry
from provider.postgres.config import ConfigError, settings_from_config
from provider.postgres.session import (
    pooled_begin,
    refused_startup_parameter,
    set_local,
    set_session,
    startup_parameters,
)
from provider.postgres.values.convert import SESSION_SETTINGS

BASE = {
    "POSTGRES_HOST": "db", "POSTGRES_PORT": "5432", "POSTGRES_USERNAME": "u",
    "POSTGRES_PASSWORD": "p", "POSTGRES_DATABASE": "d",
}  # fmt: skip


def test_every_setting_the_parsers_rely_on_is_set_and_the_timeout_in_ms() -> None:
    settings = settings_from_config({**BASE, "POSTGRES_STATEMENT_TIMEOUT": "1.5"})
    direct, local = set_session(settings), set_local(settings)
    for name, value in SESSION_SETTINGS.items():
        assert f"SET {name} = '{value}';" in direct
        assert f"SET LOCAL {name} = '{value}';" in local
    assert "SET statement_timeout = '1500ms';" in direct
    assert pooled_begin(settings).startswith("BEGIN; SET LOCAL ")
    begin = "BEGIN ISOLATION LEVEL SERIALIZABLE"
    assert pooled_begin(settings, begin).startswith(begin + "; SET LOCAL")
    no_bound = settings_from_config({**BASE, "POSTGRES_STATEMENT_TIMEOUT": "0"})
    assert "SET statement_timeout = '0ms';" in set_session(no_bound)


@pytest.mark.parametrize(
    ("sql", "alone"),
    [
        ("VACUUM t", True),
        ("  /* c */ vacuum analyze t", True),
        ("DISCARD ALL", True),
        ("CALL p()", True),
        ("CREATE INDEX CONCURRENTLY i ON t (x)", True),
        ("create database x", True),
        ("DROP DATABASE x", True),
        ("ALTER SYSTEM SET work_mem = '1MB'", True),
        ("REINDEX TABLE t", True),
        ("CHECKPOINT", True),
        ("CREATE TABLE t (x int)", False),
        ("CREATE INDEX i ON t (x)", False),
        ("SELECT 'vacuum'", False),
        ("INSERT INTO database_names VALUES ($1)", False),
        ("SELECT * FROM system_users", False),
        ("UPDATE t SET concurrently = 1", False),
    ],
)
def test_statements_that_cannot_run_in_a_transaction_block_run_alone(sql: str, alone: bool) -> None:
    assert pooled.runs_alone(sql) is alone


def test_startup_parameters_and_a_poolers_refusal() -> None:
    settings = settings_from_config({**BASE, "POSTGRES_STATEMENT_TIMEOUT": "2"})
    assert startup_parameters(settings) == {**SESSION_SETTINGS, "statement_timeout": "2000ms"}
    refusal = asyncpg.exceptions.PostgresError.new(
        {"C": "08P01", "M": "unsupported startup parameter: IntervalStyle", "S": "FATAL"}
    )
    assert refused_startup_parameter(refusal)
    assert not refused_startup_parameter(ValueError("password authentication failed"))


def test_the_pooler_key() -> None:
    assert settings_from_config(BASE).pooler == "auto"
    assert settings_from_config({**BASE, "POSTGRES_POOLER": " Transaction "}).pooler == (
        "transaction"
    )
    assert settings_from_config({**BASE, "POSTGRES_POOLER": "session"}).pooler == "none"
    assert settings_from_config({**BASE, "POSTGRES_POOLER": "none"}).pooler == "none"
    with pytest.raises(ConfigError, match="POSTGRES_POOLER must be one of"):
        settings_from_config({**BASE, "POSTGRES_POOLER": "statement"})
    # Links that differ only in the pooler mode never share a pool.
    a = settings_from_config({**BASE, "POSTGRES_POOLER": "none"})
    assert a.pool_key() != settings_from_config(BASE).pool_key()


def test_a_taken_name_is_stale_and_a_rollback_before_commit_was_never_sent() -> None:
    taken = asyncpg.exceptions.PostgresError.new(
        {"C": "42P05", "M": 'prepared statement "x" already exists', "S": "ERROR"}
    )
    assert retry.classify(taken) == retry.STALE
    assert retry.classify(retry.NeverCommitted("lost")) == retry.NOT_SENT
    timeout = pooled.statement_timeout_error()
    assert isinstance(timeout, asyncpg.exceptions.QueryCanceledError)
    assert timeout.as_dict()["sqlstate"] == "57014"
