"""The four `wasmcloud:postgres` functions against PostgreSQL, per link (no NATS in here).

Links are keyed by the calling component's id (the `source-id` of each call). Each link owns an
asyncpg pool (or shares one, with `POSTGRES_SHARE_CONNECTIONS_BY_URL`) and its statements in the
registry. Every function returns the WIT result value: `Ok(...)` or `Err(<error case>)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provider.postgres.config import ConfigError, ConnectionSettings, settings_from_config
from provider.postgres.config import shares_connections as config_shares_connections
from provider.postgres.connections import LinkPool, is_stale_statement
from provider.postgres.errors import query_error, unexpected_text
from provider.postgres.pg_values import ParamError, convert_rows, param_values
from provider.postgres.statements import StatementRegistry
from provider.wrpc.values import Case, Err, Ok

log = logging.getLogger(__name__)

HEALTH_PROBE_TIMEOUT = 2.0


@dataclass
class _SharedPool:
    pool: LinkPool
    users: set[str] = field(default_factory=set)


@dataclass
class Link:
    source_id: str
    settings: ConnectionSettings
    pool_key: tuple[object, ...]


class PostgresService:
    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._pools: dict[tuple[object, ...], _SharedPool] = {}
        self.refused_links: dict[str, str] = {}  # source id → why its config was refused
        self.registry = StatementRegistry()
        self._lock = asyncio.Lock()

    # --- links --------------------------------------------------------------------------------

    @property
    def links(self) -> Mapping[str, Link]:
        return self._links

    async def put_link(self, source_id: str, values: Mapping[str, str]) -> None:
        """Create or replace the link from `source_id`; `ConfigError` refuses it."""
        async with self._lock:
            try:
                settings = settings_from_config(values)
            except ConfigError as exc:
                self.refused_links[source_id] = str(exc)
                await self._drop_link(source_id)
                raise
            self.refused_links.pop(source_id, None)
            old = self._links.get(source_id)
            shared = config_shares_connections(values)
            pool_key = settings.pool_key() if shared else (source_id, *settings.pool_key())
            if old is not None and old.pool_key == pool_key:
                return  # same database, same pool: keep connections and statements
            await self._drop_link(source_id, forget_statements=False)  # tokens stay valid
            entry = self._pools.get(pool_key)
            if entry is None:
                entry = self._pools[pool_key] = _SharedPool(LinkPool(settings))
            entry.users.add(source_id)
            self._links[source_id] = Link(source_id, settings, pool_key)
            log.info("link ready", extra={"source_id": source_id, "database": settings.describe()})

    async def delete_link(self, source_id: str) -> None:
        async with self._lock:
            self.refused_links.pop(source_id, None)
            await self._drop_link(source_id)

    async def _drop_link(self, source_id: str, *, forget_statements: bool = True) -> None:
        link = self._links.pop(source_id, None)
        if forget_statements:
            self.registry.forget_link(source_id)
        if link is None:
            return
        entry = self._pools.get(link.pool_key)
        if entry is None:
            return
        entry.users.discard(source_id)
        if not entry.users:
            del self._pools[link.pool_key]
            await _close_pool(entry.pool)

    async def close(self, timeout: float = 0.1) -> None:
        """Close every pool (used at shutdown); connections still busy are terminated."""
        pools = [entry.pool for entry in self._pools.values()]
        self._pools.clear()
        self._links.clear()
        await asyncio.gather(*(_close_pool(pool, timeout) for pool in pools))

    def _link(self, source_id: str | None) -> Link | Case:
        link = self._links.get(source_id or "")
        if link is not None:
            return link
        refused = self.refused_links.get(source_id or "")
        if refused is not None:
            return Case("unexpected", f"the link from {source_id} was refused: {refused}")
        return Case("unexpected", f"no link from source {source_id!r} to this provider")

    def _pool(self, link: Link) -> LinkPool:
        return self._pools[link.pool_key].pool

    # --- health -------------------------------------------------------------------------------

    async def health(self) -> tuple[bool, str]:
        """Probe every link's database; (healthy, message naming what is wrong)."""
        problems = [f"link {s}: {reason}" for s, reason in sorted(self.refused_links.items())]
        probes = await asyncio.gather(*(self._probe(link) for link in self._links.values()))
        problems += [p for p in probes if p]
        if problems:
            return False, "; ".join(problems)
        return True, f"{len(self._links)} link(s) healthy"

    async def _probe(self, link: Link) -> str | None:
        try:
            async with asyncio.timeout(HEALTH_PROBE_TIMEOUT):
                async with self._pool(link).connection() as connection:
                    await connection.fetchval("SELECT 1")
            return None
        except Exception as exc:
            return f"link {link.source_id}: {link.settings.describe()}: {unexpected_text(exc)}"

    # --- the four functions -------------------------------------------------------------------

    async def query(self, source_id: str | None, sql: str, params: Sequence[Any]) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            rows = await self._run(link, sql, params, rows_wanted=True)
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok(rows)

    async def query_batch(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            async with self._pool(link).connection() as connection:
                try:
                    await connection.execute(sql)
                finally:
                    # A batch may DISCARD or DEALLOCATE (in any wording) or create types:
                    # re-read the types and re-prepare on next use.
                    await connection.refresh_types()
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok()

    async def prepare(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            async with self._pool(link).connection() as connection:
                await connection.cached_statement(sql)  # a real server-side prepare validates it
        except Exception as exc:
            error = self._error(link, exc)
            return Err(Case("unexpected", f"{error.tag}: {error.value}"))
        record = self.registry.register(link.source_id, sql, link.settings.max_statements)
        return Ok(record.token)

    async def exec(self, source_id: str | None, token: str, params: Sequence[Any]) -> Ok | Err:
        link = self._link(source_id)
        if isinstance(link, Case):
            return Err(Case("unexpected", link.value))
        record = self.registry.lookup(link.source_id, token)
        if record is None:
            return Err(Case("unknown-prepared-query"))
        try:
            affected = await self._run(link, record.sql, params, rows_wanted=False)
        except Exception as exc:
            return Err(Case("query-error", self._error(link, exc)))
        return Ok(affected)

    # --- running one statement ----------------------------------------------------------------

    async def _run(self, link: Link, sql: str, params: Sequence[Any], *, rows_wanted: bool) -> Any:
        async with self._pool(link).connection() as connection:
            for attempt in (1, 2):
                cached = await connection.cached_statement(sql)
                args = param_values(params, cached.parameter_types)
                try:
                    rows = await cached.statement.fetch(*args)
                except Exception as exc:
                    if attempt == 1 and is_stale_statement(exc):
                        # The statement never ran: forget what this connection cached, retry.
                        connection.forget_statements()
                        continue
                    raise
                if rows_wanted:
                    return convert_rows(rows, cached.converters)
                return rows_affected(cached.statement.get_statusmsg(), len(rows))
        raise AssertionError("unreachable")

    def _error(self, link: Link, error: BaseException) -> Case:
        case = query_error(error)
        if case.tag == "unexpected" and not isinstance(error, ParamError):
            log.warning(
                "query failed",
                extra={"source_id": link.source_id, "error": case.value},
            )
        return case


def rows_affected(status: str | None, rows_returned: int) -> int:
    """The count from a command tag ('INSERT 0 3' → 3, 'SELECT 5' → 5, 'CREATE TABLE' → 0)."""
    if not status:
        return rows_returned
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _close_pool(pool: LinkPool, timeout: float = 5.0) -> None:
    await pool.close(timeout)
