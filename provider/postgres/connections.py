"""Per-link connection pools, each connection with its own bounded cache of prepared statements.

asyncpg's own statement cache is off (`statement_cache_size=0`): we need each statement's
parameter types before converting the guest's values, so statements are prepared explicitly
and cached per connection here, keyed by SQL text. A cached statement that PostgreSQL no longer
knows (a guest's `DISCARD ALL` / `DEALLOCATE`, or DDL that changed its result type) is dropped
and prepared again, once, before anything ran, so the guest never sees
`prepared statement "..." does not exist`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from provider.postgres import pg_text
from provider.postgres.config import ConnectionSettings
from provider.postgres.pg_values import SESSION_SETTINGS, TEXT_TYPES, row_converters

log = logging.getLogger(__name__)

STATEMENTS_PER_CONNECTION = 256


@dataclass(frozen=True, slots=True)
class CachedStatement:
    statement: Any  # asyncpg.prepared_stmt.PreparedStatement
    parameter_types: tuple[Any, ...]  # asyncpg Types, as the server inferred them
    converters: list[Any]  # one (column name, converter) per result column


class StatementConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that owns a bounded LRU of prepared statements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: OrderedDict[str, CachedStatement] = OrderedDict()

    async def cached_statement(self, sql: str) -> CachedStatement:
        found = self.prepared.get(sql)
        if found is not None:
            self.prepared.move_to_end(sql)
            return found
        statement = await self.prepare(sql)
        found = CachedStatement(
            statement, tuple(statement.get_parameters()), row_converters(statement.get_attributes())
        )
        self.prepared[sql] = found
        if len(self.prepared) > STATEMENTS_PER_CONNECTION:
            self.prepared.popitem(last=False)  # asyncpg closes it server-side once unreferenced
        return found

    def forget_statements(self) -> None:
        self.prepared.clear()

    async def refresh_types(self) -> None:
        """Pick up types created since connect (CREATE EXTENSION hstore, CREATE TYPE ... RANGE)."""
        await configure_connection(self)
        self.forget_statements()


# The types we read and write as PostgreSQL text, found once per connection: our text types
# (pg_catalog), hstore (whatever schema its extension lives in), every range and multirange
# (asyncpg's range codec refuses text elements), and the array types of all of them.
_TEXT_TYPE_QUERY = """
SELECT t.oid, t.typname, t.typarray, n.nspname
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE (n.nspname = 'pg_catalog' AND t.typname = ANY($1::text[]))
   OR t.typname = 'hstore' OR t.typtype IN ('r', 'm')
"""


def _text_out(value: Any) -> str:
    return pg_text.format_array_literal(value) if isinstance(value, list) else str(value)


async def configure_connection(connection: Any) -> None:
    """Exchange `_TEXT_TYPE_QUERY`'s types (and their arrays) as PostgreSQL text.

    Arrays are registered as whole text values, so asyncpg never decodes a text-format array
    itself (its decoder crashes the process on an empty element); `pg_values` parses them.
    Registering a codec on an array or range type is not possible through asyncpg's public
    `set_type_codec`, so this uses the settings object that method itself uses; the asyncpg
    version is pinned in pyproject.toml and tests/test_pg_values_wire.py exercises it.
    """
    rows = await connection.fetch(_TEXT_TYPE_QUERY, list(TEXT_TYPES))
    settings = connection._protocol.get_settings()
    for row in rows:
        # Array types named as asyncpg names them ("tsvector[]"), so callers see one convention.
        for oid, name in ((row["oid"], row["typname"]), (row["typarray"], f"{row['typname']}[]")):
            if oid:
                settings.add_python_codec(
                    oid, name, row["nspname"], [], "scalar", _text_out, str, "text"
                )


async def connect(settings: ConnectionSettings) -> StatementConnection:
    connection: StatementConnection = await asyncpg.connect(
        host=settings.host,
        port=settings.port,
        user=settings.username,
        password=settings.password,
        database=settings.database,
        ssl=settings.ssl_context() or False,
        statement_cache_size=0,
        server_settings=SESSION_SETTINGS,
        connection_class=StatementConnection,
        timeout=10,
    )
    try:
        await configure_connection(connection)
    except BaseException:
        connection.terminate()
        raise
    return connection


class LinkPool:
    """Up to `size` connections to one database, each keeping its prepared statements.

    Our own small pool rather than asyncpg's: asyncpg invalidates a PreparedStatement when its
    pooled connection is released, and the point of a per-connection statement cache is to
    keep statements across calls. Connections are opened lazily, so an unreachable database
    fails calls (clearly) instead of the link.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.size = settings.pool_size
        self._slots = asyncio.Semaphore(self.size)
        self._idle: deque[StatementConnection] = deque()
        self._in_use: set[StatementConnection] = set()
        self.waiting = 0
        self.closed = False

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[StatementConnection]:
        if self.closed:
            raise asyncpg.exceptions.InterfaceError("the link's pool is closed")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            connection = self._take_idle() or await connect(self.settings)
            self._in_use.add(connection)
            try:
                yield connection
            finally:
                self._in_use.discard(connection)
                await self._give_back(connection)
        finally:
            self._slots.release()

    def _take_idle(self) -> StatementConnection | None:
        while self._idle:
            connection = self._idle.pop()  # most recently used: its statements are warm
            if not connection.is_closed():
                return connection
        return None

    async def _give_back(self, connection: StatementConnection) -> None:
        if connection.is_closed() or self.closed:
            connection.terminate()
            return
        if connection.is_in_transaction():
            # A guest left a transaction open (pooled calls have no session affinity).
            try:
                await asyncio.wait_for(connection.execute("ROLLBACK"), 5)
            except Exception:
                connection.terminate()
                return
        self._idle.append(connection)

    async def close(self, timeout: float = 5.0) -> None:
        """Close idle connections gracefully; terminate the ones still busy."""
        self.closed = True
        idle, self._idle = list(self._idle), deque()
        for connection in self._in_use:
            connection.terminate()
        results = await asyncio.gather(
            *(asyncio.wait_for(c.close(), timeout) for c in idle), return_exceptions=True
        )
        for connection, result in zip(idle, results, strict=True):
            if isinstance(result, BaseException):
                connection.terminate()


def is_stale_statement(error: BaseException) -> bool:
    """PostgreSQL forgot the statement, or its plan no longer fits: safe to prepare again."""
    if isinstance(error, asyncpg.exceptions.InvalidSQLStatementNameError):
        return True  # 26000: prepared statement "..." does not exist
    return isinstance(error, asyncpg.exceptions.FeatureNotSupportedError) and (
        "cached plan must not change result type" in str(error)
    )
