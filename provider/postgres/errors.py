"""Database failures as the precise `query-error` variant, with the text a user can act on.

The text follows the shape wasmCloud v2's `db-error` settled on: SQLSTATE, severity, message,
then detail, hint and position when PostgreSQL gives them; never a Python traceback.
"""

from __future__ import annotations

import re

import asyncpg

from provider.postgres.values.convert import ParamError
from provider.wit.values import Case

# SQLSTATE classes that mean "the SQL itself is wrong" (syntax, names, privileges, features).
_INVALID_QUERY_CLASSES = {"42", "0A", "3D", "3F", "26", "34"}
# "unnamed portal parameter $1 = …", or with a named portal 'portal "name" parameter $1 = …'
_PARAMETER_CONTEXT = re.compile(r'portal (?:"[^"]*" )?parameter \$\d+')


def describe_postgres_error(error: asyncpg.PostgresError) -> str:
    fields = error.as_dict()
    sqlstate = fields.get("sqlstate", "?????")
    severity = fields.get("severity", "ERROR")
    text = f"{severity} {sqlstate}: {fields.get('message', str(error))}"
    if detail := fields.get("detail"):
        text += f"; detail: {detail}"
    if hint := fields.get("hint"):
        text += f"; hint: {hint}"
    if position := fields.get("position"):
        text += f"; at character {position}"
    return text


def query_error(error: BaseException) -> Case:
    """The `query-error` case for an exception raised while serving a query."""
    if isinstance(error, ParamError):
        return Case("invalid-params", str(error))
    if isinstance(error, asyncpg.PostgresError):
        text = describe_postgres_error(error)
        sqlstate = error.as_dict().get("sqlstate", "")
        if _PARAMETER_CONTEXT.search(error.as_dict().get("context", "")):
            return Case("invalid-params", text)
        if sqlstate[:2] in _INVALID_QUERY_CLASSES:
            return Case("invalid-query", text)
        return Case("unexpected", text)
    if isinstance(error, asyncpg.DataError):  # asyncpg could not encode a parameter
        return Case("invalid-params", str(error).splitlines()[0])
    return Case("unexpected", unexpected_text(error))


def unexpected_text(error: BaseException) -> str:
    if isinstance(error, TimeoutError):  # before OSError: it is one since Python 3.10
        detail = str(error) if error.errno is None and str(error) else ""
        return f"database did not answer in time{': ' + detail if detail else ''}"
    if isinstance(error, OSError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return f"database unreachable: {error}"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {message}"
