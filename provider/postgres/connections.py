"""One PostgreSQL connection and the prepared statements it holds (asyncpg underneath).

asyncpg's own statement cache is off (`statement_cache_size=0`): we need each statement's
parameter types before converting the guest's values, so statements are prepared explicitly
and cached per connection here, keyed by SQL text, in a bounded LRU whose evictions are
deallocated on the server. The connection never decides what to retry; it reports why it
prepared (see `metrics.REPREPARE_CAUSES`) and forgets what PostgreSQL no longer has.

Statement names carry 48 random bits per connection, so two client connections that meet on
one server connection behind a pooler can never run each other's statement. A connection
behind a transaction-mode pooler (`behind_pooler`: the link says so, or the pid in the cancel
key the server gave at connect is not the backend's) keeps nothing on the server: each call
prepares an unnamed statement afresh (`fresh_statement`) inside its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from provider.postgres.config import ConnectionSettings
from provider.postgres.retry import first_keyword, may_read_twice
from provider.postgres.server_budget import room_from_settings
from provider.postgres.session import refused_startup_parameter, set_session, startup_parameters
from provider.postgres.socket_liveness import bound_silence
from provider.postgres.values import text as pg_text
from provider.postgres.values.convert import BINARY_ELEMENTS, TEXT_TYPES, row_converters

log = logging.getLogger(__name__)

STATEMENTS_PER_CONNECTION = 256
# Settings PostgreSQL reports to the client whenever they change (GUC_REPORT) and that the
# conversions depend on; a call that changed one leaves a session that is reset.
REPORTED_SETTINGS = (
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "client_encoding",
    "integer_datetimes",
)


_read_reported = operator.attrgetter(*REPORTED_SETTINGS)


@dataclass(slots=True)
class CachedStatement:
    statement: Any  # asyncpg.prepared_stmt.PreparedStatement
    parameter_types: tuple[Any, ...]  # asyncpg Types, as the server inferred them
    converters: list[Any]  # one (column name, converter) per result column
    column_types: tuple[str, ...]  # each result column's type name, as asyncpg names it
    touches_session: bool  # calls functions that change session state (set_config, locks)
    in_transaction: bool  # rows fetched inside a transaction (not a CALL: it may COMMIT)
    single_trip: bool  # a read that may run twice: tried in one round trip first
    rows_encoder: Any = None  # compiled by the service on first use (its wire encoder)
    shape: tuple[object, ...] = ()  # parameter types, column names and types (see _shape)


_SESSION_FUNCTIONS = re.compile(
    r"\b(set_config|pg_advisory_lock\w*|pg_advisory_xact\w*|pg_try_advisory\w*)\b", re.I
)


PrepareListener = Callable[[str], None]  # called with the cause of each server-side prepare


class StatementConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that owns a bounded LRU of prepared statements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: OrderedDict[str, CachedStatement] = OrderedDict()
        self.max_statements = STATEMENTS_PER_CONNECTION
        self._evicted: set[str] = set()  # SQL this connection dropped at its bound
        self._forgotten: dict[str, str] = {}  # SQL PostgreSQL lost → why (for the metrics)
        self.on_prepare: PrepareListener | None = None
        self.on_evict: Callable[[], None] | None = None
        self._statement_number = 0
        self._statement_prefix = f"sqldb_{secrets.token_hex(6)}_"
        self.behind_pooler = False  # each call its own transaction, nothing kept on the server
        self.session_sql = ""  # SETs that give a direct session what every call expects
        self.text_oids: set[int] = set()  # types this connection exchanges as text
        self.session_dirty = False  # a guest may have changed session state (SET, ...)
        self.last_user = ""  # the link whose call used this connection last (shared pools)
        self.idle_since = 0.0  # time.monotonic() when it was last given back
        self.running_since = 0.0  # time.monotonic() its statement began (0.0: none running)
        self.overdue = False  # terminated: its statement ran far past the statement timeout
        self._reported_at_start: tuple[object, ...] = ()

    async def cached_statement(self, sql: str) -> CachedStatement:
        found = self.prepared.get(sql)
        if found is not None:
            self.prepared.move_to_end(sql)
            return found
        cause = self._forgotten.pop(sql, None) or (
            "evicted" if sql in self._evicted else "first_use"
        )
        statement = await self._prepared_with_types(sql, self._next_name)
        self._evicted.discard(sql)
        found = self.prepared[sql] = _describe(sql, statement)
        if self.on_prepare is not None:
            self.on_prepare(cause)
        if len(self.prepared) > self.max_statements:
            await self._evict_oldest()
        return found

    async def fresh_statement(self, sql: str) -> CachedStatement:
        """`sql` as an unnamed statement prepared now (behind a pooler, inside the call's own
        transaction): nothing of it outlives the call on the server. What was built for the
        same SQL with the same parameter and column types (converters, the rows encoder) is
        reused; another shape (DDL since) is described anew."""
        statement = await self._prepared_with_types(sql, _unnamed)
        found = self.prepared.get(sql)
        if found is not None and found.shape == _shape(statement):
            found.statement = statement
            self.prepared.move_to_end(sql)
            return found
        found = self.prepared[sql] = _describe(sql, statement)
        if len(self.prepared) > self.max_statements:
            self.prepared.popitem(last=False)  # nothing of it lives on the server
        return found

    async def _prepared_with_types(self, sql: str, name: Callable[[], str]) -> Any:
        """A statement (named by `name()`) whose types all have codecs here."""
        try:
            statement = await self.prepare(sql, name=name())
        except asyncpg.exceptions.UnsupportedClientFeatureError:
            # A range or composite created since connect (on another connection, say).
            self.text_oids = await configure_connection(self)
            statement = await self.prepare(sql, name=name())
        types = (*statement.get_parameters(), *(a.type for a in statement.get_attributes()))
        if needs_text_registration(types, self.text_oids):
            # A type created since connect (an extension's array, say): register, prepare again.
            self.text_oids = await configure_connection(self)
            del statement
            statement = await self.prepare(sql, name=name())
        return statement

    def _next_name(self) -> str:
        # A named (server-side, long-lived) statement: asyncpg makes unnamed ones when its
        # own cache is off, and an unnamed statement is parsed again on every execution.
        self._statement_number += 1
        return f"{self._statement_prefix}{self._statement_number}"

    def get_reset_query(self) -> str:
        """asyncpg's reset (rollback, CLOSE ALL, UNLISTEN, advisory locks, RESET ALL) plus what
        RESET ALL leaves alone: the role and session user, temporary tables and sequences.
        Never DISCARD ALL/PLANS: they would throw away the prepared statements."""
        standard: str = super().get_reset_query()
        return (
            "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; "
            + standard
            + " DISCARD TEMP; DISCARD SEQUENCES; "
            + self.session_sql  # RESET ALL went back to the server's defaults
        )

    def remember_session(self) -> None:
        """Note the settings PostgreSQL reports now, as the session every call expects."""
        self._reported_at_start = self._reported_settings()

    def _reported_settings(self) -> tuple[object, ...]:
        # One C call on every release (PostgreSQL reports all five on every connection).
        reported: tuple[object, ...] = _read_reported(self.get_settings())
        return reported

    def session_changed(self) -> bool:
        """A guest changed what every call relies on (DateStyle, TimeZone, ...), or may have."""
        return self.session_dirty or self._reported_settings() != self._reported_at_start

    def needs_reset(self) -> bool:
        """Whether the next call may not have this session as it is (checked on every release).
        Behind a pooler the session is the pooler's: a call resets what it changed inside its
        own transaction (see `pooled`), so only a transaction left open counts."""
        if self.behind_pooler:
            return bool(self.is_in_transaction())
        return self.is_in_transaction() or self.session_changed()

    async def _evict_oldest(self) -> None:
        evicted_sql = self.prepared.popitem(last=False)[0]  # drops the last reference
        if len(self._evicted) < 4 * self.max_statements:  # bounded memory of evictions
            self._evicted.add(evicted_sql)
        if self.on_evict is not None:
            self.on_evict()
        # The evicted PreparedStatement is unreferenced now, so asyncpg has queued it for
        # closing; close it on the server right away rather than at the next prepare.
        cleanup = getattr(self, "_cleanup_stmts", None)
        if cleanup is not None:
            await cleanup()

    def forget_statements(self, cause: str) -> None:
        """PostgreSQL no longer has our statements (or their plans): prepare again on use."""
        self._forgotten = dict.fromkeys(self.prepared, cause)
        self.prepared.clear()

    def forget_statement(self, sql: str, cause: str) -> None:
        if self.prepared.pop(sql, None) is not None:
            self._forgotten[sql] = cause

    async def refresh_types(self) -> None:
        """Pick up types created since connect (CREATE EXTENSION hstore, CREATE TYPE ... RANGE).

        Cached statements stay: their codecs were fixed when they were prepared, and a type
        that did not exist then cannot appear in them.
        """
        self.text_oids = await configure_connection(self)


# The types we read and write as PostgreSQL text, found per connection: our text types
# (pg_catalog), hstore (whatever schema its extension lives in), every range and multirange
# (asyncpg's range codec refuses text elements), composite types and anonymous records (their
# fields may hold any of these, which asyncpg would then decode wrongly), and every array type
# whose elements asyncpg
# does not decode in binary for us (`BINARY_ELEMENTS`): asyncpg 0.32's own text-array decoder
# crashes the process on an empty element (`ARRAY[''::refcursor]`), so it must never run.
_TEXT_TYPE_QUERY = """
SELECT t.oid, t.typname AS name, n.nspname
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE (n.nspname = 'pg_catalog' AND t.typname = ANY($1::text[]))
   OR t.typname = 'hstore' OR t.typtype IN ('r', 'm', 'c')
   OR (n.nspname = 'pg_catalog' AND t.typname = 'record')
UNION ALL
SELECT a.oid, e.typname || '[]', n.nspname
FROM pg_catalog.pg_type a
JOIN pg_catalog.pg_type e ON e.oid = a.typelem AND e.typarray = a.oid
JOIN pg_catalog.pg_namespace n ON n.oid = e.typnamespace
WHERE NOT (n.nspname = 'pg_catalog' AND e.typname = ANY($2::text[]))
"""


def _text_out(value: Any) -> str:
    return pg_text.format_array_literal(value) if isinstance(value, list) else str(value)


async def configure_connection(connection: Any) -> set[int]:
    """Exchange `_TEXT_TYPE_QUERY`'s types as PostgreSQL text; returns their oids.

    Arrays are registered as whole text values and parsed by `pg_values`. Registering a codec
    on an array or range type is not possible through asyncpg's public `set_type_codec`, so
    this uses the settings object that method itself uses; the asyncpg version is pinned in
    pyproject.toml and tests/integration/test_pg_values_wire.py exercises it.
    """
    rows = await connection.fetch(_TEXT_TYPE_QUERY, list(TEXT_TYPES), list(BINARY_ELEMENTS))
    settings = connection._protocol.get_settings()
    for row in rows:
        # Array types are named as asyncpg names them ("tsvector[]"): one convention.
        settings.add_python_codec(
            row["oid"], row["name"], row["nspname"], [], "scalar", _text_out, str, "text"
        )
    return {int(row["oid"]) for row in rows}


def needs_text_registration(pg_types: Any, registered: set[int]) -> bool:
    """An array or composite type in a statement that asyncpg would decode itself (a new one)."""
    return any(
        t.kind in ("array", "composite")
        and t.oid not in registered
        and not (t.schema == "pg_catalog" and t.name.removesuffix("[]") in BINARY_ELEMENTS)
        for t in pg_types
    )


async def _open(settings: ConnectionSettings, timeout: float, **options: Any) -> Any:
    """A connection within `timeout` seconds whose peer going silent is noticed in seconds."""
    connection = await asyncpg.connect(
        host=settings.host,
        port=settings.port,
        user=settings.username,
        password=settings.password,
        database=settings.database,
        ssl=settings.ssl_context() or False,
        statement_cache_size=0,
        timeout=timeout,
        **options,
    )
    bound_silence(connection._transport)
    return connection


async def reach(settings: ConnectionSettings) -> None:
    """Does the server accept a TCP connection? (health, when the budget has no room for a
    whole session: this costs the server no backend)"""
    if settings.host.startswith("/"):
        path = f"{settings.host}/.s.PGSQL.{settings.port}"
        _, writer = await asyncio.open_unix_connection(path)
    else:
        _, writer = await asyncio.open_connection(settings.host, settings.port)
    writer.close()


async def probe(settings: ConnectionSettings, timeout: float) -> None:
    """Can a new connection reach the database and run a query? (health)"""
    connection = await _open(settings, timeout)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close(timeout=2)


async def connect(settings: ConnectionSettings, timeout: float = 10) -> StatementConnection:
    """A connection as every call expects it (see `session`): the settings as startup
    parameters, or, where a pooler refuses them, without them; opened within `timeout`."""
    try:
        connection: StatementConnection = await _open(
            settings, timeout, connection_class=StatementConnection,
            server_settings=startup_parameters(settings),
        )  # fmt: skip
        offered = True
    except asyncpg.exceptions.ProtocolViolationError as exc:
        if not refused_startup_parameter(exc):
            raise
        connection = await _open(settings, timeout, connection_class=StatementConnection)
        offered = False
    try:
        connection.text_oids = await configure_connection(connection)
        connection.behind_pooler = await _behind_pooler(connection, settings.pooler)
        if not connection.behind_pooler and not offered:
            connection.session_sql = set_session(settings)
            await connection.execute(connection.session_sql)
        connection.remember_session()
    except BaseException:
        connection.terminate()
        raise
    return connection


async def server_room(connection: Any) -> int:
    """What the server lets this replica open (see server_budget.room_from_settings)."""
    row = await connection.fetchrow(
        "SELECT current_setting('max_connections')::int,"
        " current_setting('superuser_reserved_connections')::int"
        " + coalesce(current_setting('reserved_connections', true)::int, 0)"
    )
    return room_from_settings(int(row[0]), int(row[1]))


async def _behind_pooler(connection: Any, pooler: str) -> bool:
    if pooler != "auto":
        return pooler == "transaction"
    # A pooler answers the startup with a cancel key of its own (it routes cancel requests),
    # whose pid is not the backend's; a direct session's is.
    backend_pid = await connection.fetchval("SELECT pg_backend_pid()")
    return bool(backend_pid != connection.get_server_pid())


def _unnamed() -> str:
    return ""


def _shape(statement: Any) -> tuple[object, ...]:
    """Parameter types, then each column's name and type (a renamed column builds anew)."""
    parameters = tuple(t.oid for t in statement.get_parameters())
    return (*parameters, -1, *((a.name, a.type.oid) for a in statement.get_attributes()))


def _describe(sql: str, statement: Any) -> CachedStatement:
    """What running `statement` takes: its types, converters and how it may be run."""
    return CachedStatement(
        statement,
        tuple(statement.get_parameters()),
        row_converters(statement.get_attributes()),
        tuple(a.type.name for a in statement.get_attributes()),
        bool(_SESSION_FUNCTIONS.search(sql)),
        first_keyword(sql) != "call",
        may_read_twice(sql),
        shape=_shape(statement),
    )
