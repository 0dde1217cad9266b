"""The four `wasmcloud:postgres` functions against PostgreSQL, per link (no NATS in here).

Links are keyed by the calling component's id (the `source-id` of each call). Each link owns a
pool (or shares one, with `POSTGRES_SHARE_CONNECTIONS_BY_URL`) and its statement tokens. Every
function returns the WIT result value: `Ok(...)` or `Err(<error case>)`.

Statements run through the link's `StatementRunner` (`runner`), where the pooling guarantees
live; this module is the link registry, the four functions and their error shapes, and health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from provider.postgres import retry
from provider.postgres.bounded_fetch import ResultTooLarge
from provider.postgres.config import ConfigError, ConnectionSettings, settings_from_config
from provider.postgres.config import shares_connections as config_shares_connections
from provider.postgres.connections import probe, reach
from provider.postgres.errors import query_error, unexpected_text
from provider.postgres.metrics import Metrics
from provider.postgres.pool import AcquireTimeout, LinkPool, describe
from provider.postgres.runner import (
    Link,
    OutcomeUnknown,
    RowsEncoderFactory,
    StatementRunner,
    StatementTracer,
)
from provider.postgres.server_budget import ServerBudgets
from provider.postgres.statements import StatementRegistry
from provider.postgres.transactions import Transactions
from provider.wit.values import Case, Err, Ok

log = logging.getLogger(__name__)

# Seconds health may take: the lattice sets a share of the host's RPC timeout (a reply later
# than that is dropped by the host, and the lattice never learns we are unhealthy).
HEALTH_DEADLINE = 0.8
OVERDUE_CHECK_INTERVAL = 1.0  # seconds between looks for statements the server left unanswered


@dataclass
class _Prober:
    """A health probe's share of a server budget: one connection while it runs."""

    held: int = 0


@dataclass
class _SharedPool:
    pool: LinkPool
    users: set[str] = field(default_factory=set)


class PostgresService:
    def __init__(
        self,
        metrics: Metrics | None = None,
        registry: StatementRegistry | None = None,
        compile_rows: RowsEncoderFactory | None = None,
    ) -> None:
        self._links: dict[str, Link] = {}
        self._pools: dict[tuple[object, ...], _SharedPool] = {}
        self.refused_links: dict[str, str] = {}  # source id → why its config was refused
        self.registry = registry or StatementRegistry()
        self.metrics = metrics or Metrics()
        self.budgets = ServerBudgets()  # one connection budget per server, for every pool
        self.health_deadline = HEALTH_DEADLINE
        self._overdue_watch: asyncio.Task[None] | None = None
        self.metrics.watch(lambda: self._on_service_loop(self._snapshot))
        self.metrics.watch_servers(lambda: self._on_service_loop(self._server_snapshot))
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.runner = StatementRunner(self.metrics, self._links.get, compile_rows)
        self.transactions = Transactions(self.runner, self.link, self.registry, self.metrics)

    @property
    def statement_tracer(self) -> StatementTracer | None:
        return self.runner.tracer

    @statement_tracer.setter
    def statement_tracer(self, tracer: StatementTracer | None) -> None:
        self.runner.tracer = tracer

    # --- links --------------------------------------------------------------------------------

    @property
    def links(self) -> Mapping[str, Link]:
        return self._links

    async def put_link(self, source_id: str, values: Mapping[str, str]) -> None:
        """Create or replace the link from `source_id`; `ConfigError` refuses it."""
        self._loop = asyncio.get_running_loop()
        if self._overdue_watch is None:
            self._overdue_watch = asyncio.create_task(self._stop_overdue_statements())
        async with self._lock:
            try:
                settings = settings_from_config(values)
            except ConfigError as exc:
                self.refused_links[source_id] = str(exc)
                self._drop_link(source_id)
                raise
            self.refused_links.pop(source_id, None)
            self.registry.keep_shared(source_id)  # deleted before: its records are live again
            old = self._links.get(source_id)
            shared = config_shares_connections(values)
            pool_key = settings.pool_key() if shared else (source_id, *settings.pool_key())
            if old is not None and old.pool_key == pool_key:
                old.settings = settings  # e.g. a new POSTGRES_MAX_STATEMENTS; same pool
                self._update_caps()
                return
            if old is not None:  # another database (or pool): its transactions end first
                await self.transactions.end_link(source_id, "link_removed")
            entry = self._pools.get(pool_key)
            if entry is None:
                entry = self._pools[pool_key] = _SharedPool(self._new_pool(source_id, settings))
            entry.users.add(source_id)
            # The new link serves from now on; calls on the old pool finish undisturbed.
            self._links[source_id] = Link(source_id, settings, pool_key, entry.pool)
            if old is not None:
                self._release_pool(old)
            self._update_caps()
            log.info("link ready", extra={"source_id": source_id, "database": settings.describe()})

    async def refuse_link(self, source_id: str, reason: str) -> None:
        """A link that cannot be used (its secrets cannot be opened, ...): its calls say why."""
        await self.transactions.end_link(source_id, "link_removed")
        async with self._lock:
            self.refused_links[source_id] = reason
            self._drop_link(source_id)

    def _update_caps(self) -> None:
        """Each server's budget capped by the smallest POSTGRES_SERVER_CONNECTIONS of its
        links; budgets no pool uses any more are dropped."""
        caps: dict[str, int | None] = {}
        for link in self._links.values():
            cap, server = link.settings.server_connections, link.settings.server
            if cap is not None:
                known = caps.get(server)
                caps[server] = cap if known is None else min(cap, known)
        self.budgets.set_caps(caps)
        self.budgets.forget_unused()

    def _new_pool(self, label: str, settings: ConnectionSettings) -> LinkPool:
        metrics = self.metrics
        return LinkPool(
            settings,
            on_prepare=lambda cause: self._prepared(label, cause),
            on_evict=lambda: metrics.evictions.labels(label, "connection").inc(),
            on_wait=metrics.acquire_wait.labels(label).observe,
            on_hand_over=metrics.hand_over_reset.labels(label).observe,
            statements_per_connection=settings.statements_per_connection,
            budget=self.budgets.for_server(settings.server),
        )

    def _prepared(self, label: str, cause: str) -> None:
        self.metrics.prepares.labels(label, cause).inc()
        if self.statement_tracer is not None and cause != "first_use":
            self.statement_tracer.event("re-prepare", {"cause": cause})

    async def delete_link(self, source_id: str) -> None:
        await self.transactions.end_link(source_id, "link_removed")
        async with self._lock:
            self.refused_links.pop(source_id, None)
            self._drop_link(source_id)
        await self.registry.forget_shared(source_id)
        if source_id not in self._links:  # (not put again meanwhile)
            self.metrics.forget_link(source_id)

    def _drop_link(self, source_id: str) -> None:
        self.registry.forget_link(source_id)
        link = self._links.pop(source_id, None)
        if link is not None:
            self._release_pool(link)
            self._update_caps()

    def _release_pool(self, link: Link) -> None:
        """The link no longer uses its pool; retire the pool once nobody does."""
        entry = self._pools.get(link.pool_key)
        if entry is None:
            return
        entry.users.discard(link.source_id)
        if not entry.users:
            del self._pools[link.pool_key]
            task = asyncio.create_task(entry.pool.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _stop_overdue_statements(self) -> None:
        """Once a second: drop the connections whose statement the server no longer answers
        in time (LinkPool.stop_overdue); TCP notices a silent network, this a hung server."""
        while True:
            await asyncio.sleep(OVERDUE_CHECK_INTERVAL)
            now = time.monotonic()
            for entry in list(self._pools.values()):
                if entry.pool.stop_overdue(now):
                    log.warning(
                        "statements overdue: their connections were dropped",
                        extra={"database": entry.pool.settings.describe()},
                    )

    async def close(self, timeout: float = 0.1) -> None:
        """Close every pool (used at shutdown); connections still busy are terminated."""
        if self._overdue_watch is not None:
            self._overdue_watch.cancel()
        await self.transactions.close()
        pools = [entry.pool for entry in self._pools.values()]
        self._pools.clear()
        self._links.clear()
        await asyncio.gather(*(pool.close(timeout) for pool in pools))
        await self.budgets.close()

    def link(self, source_id: str | None) -> Link | Case:
        """The link `source_id` calls through, or the error case saying why there is none."""
        link = self._links.get(source_id or "")
        if link is not None:
            return link
        refused = self.refused_links.get(source_id or "")
        if refused is not None:
            return Case("unexpected", f"the link from {source_id} was refused: {refused}")
        return Case("unexpected", f"no link from source {source_id!r} to this provider")

    # --- health and metrics -------------------------------------------------------------------

    def _on_service_loop(
        self, read: Callable[[], dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """prometheus-client collects on its HTTP thread: read the state on the loop's."""
        loop = self._loop
        if loop is None or not loop.is_running() or _on_loop(loop):
            return read()

        async def snapshot() -> dict[str, dict[str, Any]]:
            return read()

        return asyncio.run_coroutine_threadsafe(snapshot(), loop).result(timeout=2)

    def _server_snapshot(self) -> dict[str, dict[str, Any]]:
        return {budget.server: budget.snapshot() for budget in self.budgets.budgets()}

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                **link.pool.snapshot(),
                "statements": self.registry.count(name),
                "transactions_open": self.transactions.open_count(name),
                "transactions_oldest_seconds": self.transactions.oldest_age(name),
            }
            for name, link in list(self._links.items())
            if link.pool_key in self._pools
        }

    async def health(self) -> tuple[bool, str]:
        """Probe every link's database, once per distinct database and credentials; (healthy,
        message naming what is wrong, and the servers whose connection budget holds calls)."""
        problems = [f"link {s}: {reason}" for s, reason in sorted(self.refused_links.items())]
        groups: dict[tuple[object, ...], list[Link]] = {}
        for link in self._links.values():
            groups.setdefault(link.settings.pool_key(), []).append(link)
        probes = [asyncio.create_task(self._probe(links[0])) for links in groups.values()]
        if probes:
            await asyncio.wait(probes, timeout=self.health_deadline)
        for links, task in zip(groups.values(), probes, strict=True):
            if task.done():
                failure = task.result()
            else:  # a server gone silent: say so now, while the host still listens
                task.cancel()
                failure = (
                    f"{links[0].settings.describe()}: no answer within {self.health_deadline:g} s"
                )
            if failure:
                problems += [f"link {link.source_id}: {failure}" for link in links]
        busy = [
            f"the connection budget is the bottleneck: {budget.describe()}"
            for budget in self.budgets.budgets()
            if budget.waiting or budget.refused_now
        ]
        summaries = busy + [self._summary(name) for name in sorted(self._links)]
        if problems:
            return False, "; ".join(problems + summaries)
        return True, "; ".join([f"{len(self._links)} link(s) healthy", *summaries])

    def _summary(self, name: str) -> str:
        link = self._links[name]
        reprepares = self.metrics.prepares_by_cause(name)
        causes = ", ".join(f"{k} {v}" for k, v in reprepares.items() if v and k != "first_use")
        reasons = (retry.STALE, retry.PLAN_CHANGED, retry.NOT_SENT, retry.LOST)
        retries = sum(
            int(self.metrics.count(self.metrics.retries, link=name, reason=r)) for r in reasons
        )
        return (
            f"{name}: {describe(link.pool)}, {self.registry.count(name)} statements, "
            f"{self.transactions.open_count(name)} open transactions, "
            f"re-prepares: {causes or 'none'}, retries {retries}"
        )

    async def _probe(self, link: Link) -> str | None:
        """What is wrong with reaching the link's database, or None. Its own connection, not
        one of the pool's (a busy pool is not an unreachable database), within the server's
        budget; with no room there, a TCP connection shows the server answers."""
        budget = link.pool.budget
        prober = _Prober()
        if not budget.try_take(prober):
            try:
                await reach(link.settings)
            except OSError as exc:
                return f"{link.settings.describe()}: {unexpected_text(exc)}"
            return None
        try:
            await probe(link.settings, self.health_deadline)
            return None
        except asyncpg.exceptions.TooManyConnectionsError:
            return None  # it answers; the budget line says the server is full
        except Exception as exc:
            return f"{link.settings.describe()}: {unexpected_text(exc)}"
        finally:
            budget.give(prober)

    # --- the four functions -------------------------------------------------------------------

    async def query(self, source_id: str | None, sql: str, params: Sequence[Any]) -> Ok | Err:
        link = self.link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            rows = await self.runner.run(link, sql, params, rows_wanted=True)
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok(rows)

    async def query_batch(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self.link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            await self.runner.run_batch(link, sql)
        except Exception as exc:
            return Err(self._error(link, exc))
        return Ok()

    async def prepare(self, source_id: str | None, sql: str) -> Ok | Err:
        link = self.link(source_id)
        if isinstance(link, Case):
            return Err(link)
        try:
            await self.runner.run(link, sql, None, rows_wanted=False)  # a real server-side prepare
        except Exception as exc:
            error = self._error(link, exc)
            return Err(Case("unexpected", f"{error.tag}: {error.value}"))
        if link.source_id not in self._links:
            return Err(Case("unexpected", f"the link from {link.source_id} was deleted"))
        record, evicted = self.registry.register(link.source_id, sql, link.settings.max_statements)
        await self.registry.share(link.source_id, record)
        self.metrics.statements_registered.labels(link.source_id).inc()
        if evicted:
            self.metrics.evictions.labels(link.source_id, "link").inc(evicted)
        return Ok(record.token)

    async def exec(self, source_id: str | None, token: str, params: Sequence[Any]) -> Ok | Err:
        link = self.link(source_id)
        if isinstance(link, Case):
            return Err(Case("unexpected", link.value))
        record = self.registry.lookup(link.source_id, token) or await self.registry.find(
            link.source_id, token, link.settings.max_statements
        )
        if record is None:
            self.metrics.errors.labels(link.source_id, "unknown-prepared-query").inc()
            return Err(Case("unknown-prepared-query"))
        try:
            affected = await self.runner.run(
                link, record.sql, params, rows_wanted=False, record=record
            )
        except Exception as exc:
            return Err(Case("query-error", self._error(link, exc)))
        return Ok(affected)

    def _error(self, link: Link, error: BaseException) -> Case:
        case = (
            Case("unexpected", str(error))
            if isinstance(error, OutcomeUnknown | AcquireTimeout | ResultTooLarge)
            else query_error(error)
        )
        if isinstance(error, asyncpg.exceptions.QueryCanceledError) and "statement timeout" in (
            case.value
        ):
            bound = f"POSTGRES_STATEMENT_TIMEOUT is {link.settings.statement_timeout:g} s"
            case = Case(case.tag, f"{case.value} ({bound})")
        self.metrics.errors.labels(link.source_id, case.tag).inc()
        if case.tag == "unexpected":
            log.warning("query failed", extra={"source_id": link.source_id, "error": case.value})
        return case


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
