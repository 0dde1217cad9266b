"""The sqldb-postgres provider: `PostgresService` behind the lattice hooks and wRPC exports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client import start_http_server

from provider.common.redaction import SecretRedactor
from provider.lattice.links import LinkDefinition
from provider.lattice.services import LatticeServices, ReplicaCalls, ServiceUnavailable
from provider.observability.loop_metrics import EventLoopCollector
from provider.observability.telemetry import Telemetry
from provider.observability.tracing import CallTracer, StatementTracer
from provider.postgres.service import PostgresService
from provider.postgres.statements import SHARED_FULL
from provider.postgres.values.row_wire import RowWire
from provider.sqldb.statement_store import SharedStatementStore
from provider.wit.model import Function, postgres_package
from provider.wit.values import Case, Err
from provider.wrpc.server import CallContext, CallObserver, Export, FailureResult, Handler

log = logging.getLogger(__name__)

# A replica holding a transaction answers a forwarded call's handshake at once, before any SQL
# runs: one that does not is gone with its transactions. Its statement may then take as long
# as the host lets a call take.
FORWARD_HANDSHAKE_TIMEOUT = 1.0
FORWARD_RESULT_TIMEOUT = 600.0

SHARE_KEY = "POSTGRES_SHARE_CONNECTIONS_BY_URL"


def link_key(source_id: str | None, link_name: str = "default") -> str:
    """Links are keyed by the calling component, and by link name when it is not `default`."""
    source = source_id or ""
    return source if link_name == "default" else f"{source}#{link_name}"


def unexpected_failure(message: str) -> tuple[Any, ...]:
    """The answer to a call that cannot be served: every function's error has `unexpected`."""
    return (Err(Case("unexpected", message)),)


# PostgreSQL's own bound on a statement's parameters: a longer list could never run, so it is
# refused as soon as its count arrives, before the rest of the call is read or decoded.
MAX_PARAMETERS = 65_535


def too_many_query_params(message: str) -> tuple[Any, ...]:
    return (Err(Case("invalid-params", f"{message} (PostgreSQL's limit per statement)")),)


def too_many_exec_params(message: str) -> tuple[Any, ...]:
    return (Err(Case("query-error", too_many_query_params(message)[0].value)),)


# transaction-error's query-error carries the same query-error as `exec`'s.
too_many_transaction_params = too_many_exec_params


class PostgresProvider:
    def __init__(
        self, service: PostgresService | None = None, redactor: SecretRedactor | None = None
    ) -> None:
        self.service = service or PostgresService(compile_rows=RowWire().compile)
        # Error texts (a database may quote a user name) pass it on the way out.
        self.redactor = redactor or SecretRedactor()
        self.config: dict[str, str] = {}
        self.unshared_reason: str | None = None  # why tokens are not shared with replicas
        self.forwarder: ReplicaCalls | None = None  # to other replicas' transactions
        self.call_observer: CallObserver | None = None  # a SERVER span per call (tracing on)
        self.telemetry: Telemetry | None = None  # OTLP export, when the host turned it on
        self.loop_tasks = EventLoopCollector()  # the loop is known once attached
        self.service.metrics.registry.register(self.loop_tasks)

    def observe(self, telemetry: Telemetry) -> None:
        """Export over OTLP as `telemetry` says: trace every call and statement when traces
        are on (metrics are read from the registry on their own thread)."""
        self.telemetry = telemetry
        if telemetry.tracing is not None:
            self.call_observer = CallTracer(telemetry.tracing)
            self.service.statement_tracer = StatementTracer(telemetry.tracing, self.redactor)

    def serve_metrics(self, port: int, address: str = "127.0.0.1") -> None:
        """Expose the Prometheus text format on http://{address}:{port}/metrics."""
        start_http_server(port, addr=address, registry=self.service.metrics.registry)
        log.info("metrics served", extra={"address": address, "port": port})

    # --- lifecycle hooks ------------------------------------------------------------------------

    async def attach(self, services: LatticeServices) -> None:
        """Share statement tokens with this provider's other replicas (a key-value bucket),
        and relay calls on their transactions to them."""
        self.loop_tasks.loop = asyncio.get_running_loop()
        self.forwarder = services.replica_calls(FORWARD_HANDSHAKE_TIMEOUT, FORWARD_RESULT_TIMEOUT)
        try:
            store = await SharedStatementStore.open(services)
        except ServiceUnavailable as exc:
            self.unshared_reason = str(exc)
            log.warning(
                "no usable JetStream key-value bucket: prepared-statement tokens stay on this "
                "replica (replicas will not share them)",
                extra={"error": self.unshared_reason},
            )
            return
        self.service.registry.shared = store

    async def put_link(self, link: LinkDefinition, values: dict[str, str]) -> None:
        if SHARE_KEY in link.target_config:  # for this one key, config beats a secret
            values = {**values, SHARE_KEY: link.target_config[SHARE_KEY]}
        await self.service.put_link(link_key(link.source_id, link.name), values)

    async def delete_link(self, link: LinkDefinition) -> None:
        await self.service.delete_link(link_key(link.source_id, link.name))

    async def refuse_link(self, link: LinkDefinition, reason: str) -> None:
        await self.service.refuse_link(link_key(link.source_id, link.name), reason)

    async def health(self) -> tuple[bool, str]:
        healthy, message = await self.service.health()
        if self.unshared_reason is not None:
            message += "; replicas will not share statement tokens (no usable JetStream KV)"
        if self.service.registry.shared_full:
            message += f"; {SHARED_FULL}"
        return healthy, message

    async def config_update(self, config: dict[str, str]) -> None:
        self.config = config

    async def shutdown(self) -> None:
        await self.service.close(timeout=0.05)
        if self.forwarder is not None:
            await self.forwarder.close()

    async def flush(self, timeout: float) -> None:
        """Spans and metrics still buffered go out (the last step before answering the host)."""
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.flush, timeout)

    @property
    def replica_id(self) -> str:
        """Named in this replica's transaction tokens; it serves them on its own subject."""
        return self.service.transactions.replica

    # --- wRPC exports ---------------------------------------------------------------------------

    def exports(self) -> Sequence[Export]:
        """The shared functions (one queue group for all replicas); calls on another
        replica's transaction are forwarded to it."""
        return self._exports(forwarding=True)

    def replica_exports(self) -> Sequence[Export]:
        """The transactions functions on this replica's own subject (forwarded calls land
        there, and are served here: never forwarded again)."""
        instance = postgres_package().interfaces["transactions"].instance
        return [e for e in self._exports(forwarding=False) if e.function.instance == instance]

    def _exports(self, *, forwarding: bool) -> list[Export]:
        package = postgres_package()
        handlers: dict[tuple[str, str], tuple[Handler, FailureResult | None]] = {
            ("query", "query"): (self._query, too_many_query_params),
            ("query", "query-batch"): (self._query_batch, None),
            ("prepared", "prepare"): (self._prepare, None),
            ("prepared", "exec"): (self._exec, too_many_exec_params),
            ("transactions", "begin"): (self._begin, None),
            ("transactions", "query"): (self._transaction_query, too_many_transaction_params),
            ("transactions", "exec"): (self._transaction_exec, too_many_transaction_params),
            ("transactions", "commit"): (self._commit, None),
            ("transactions", "rollback"): (self._rollback, None),
        }
        if forwarding:
            for key in (("transactions", "query"), ("transactions", "exec"),
                        ("transactions", "commit"), ("transactions", "rollback")):  # fmt: skip
                handler, refuse = handlers[key]
                handlers[key] = (self._forwarding(package.function(*key), handler), refuse)
        return [
            Export(
                package.function(interface, name),
                handler,
                unexpected_failure,
                max_list_items=MAX_PARAMETERS if refuse is not None else None,
                refuse_params=refuse,
            )
            for (interface, name), (handler, refuse) in handlers.items()
        ]

    async def _query(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        sql, values = params
        return (self.redactor.redact_value(await self.service.query(_link(context), sql, values)),)

    async def _query_batch(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (sql,) = params
        return (self.redactor.redact_value(await self.service.query_batch(_link(context), sql)),)

    async def _prepare(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (sql,) = params
        return (self.redactor.redact_value(await self.service.prepare(_link(context), sql)),)

    async def _exec(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        token, values = params
        return (self.redactor.redact_value(await self.service.exec(_link(context), token, values)),)

    def _forwarding(self, function: Function, local: Handler) -> Handler:
        """`local`, unless the call's transaction token names another replica: then the
        call is relayed to that replica (and `unknown-transaction` if it is gone)."""
        transactions = self.service.transactions

        async def handler(context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
            owner = transactions.owner_of(params[0]) if isinstance(params[0], str) else None
            if owner is None or owner == transactions.replica or self.forwarder is None:
                return await local(context, params)
            self.service.metrics.transactions.labels(_link(context), "forwarded").inc()
            relayed = await self.forwarder.call(owner, function, params, context.headers)
            return relayed if relayed is not None else (Err(Case("unknown-transaction")),)

        return handler

    async def _begin(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (options,) = params
        return (
            self.redactor.redact_value(
                await self.service.transactions.begin(_link(context), options)
            ),
        )

    async def _transaction_query(
        self, context: CallContext, params: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        token, sql, values = params
        transactions = self.service.transactions
        return (
            self.redactor.redact_value(
                await transactions.query(_link(context), token, sql, values)
            ),
        )

    async def _transaction_exec(
        self, context: CallContext, params: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        token, statement, values = params
        transactions = self.service.transactions
        return (
            self.redactor.redact_value(
                await transactions.exec(_link(context), token, statement, values)
            ),
        )

    async def _commit(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (token,) = params
        return (
            self.redactor.redact_value(
                await self.service.transactions.commit(_link(context), token)
            ),
        )

    async def _rollback(self, context: CallContext, params: tuple[Any, ...]) -> tuple[Any, ...]:
        (token,) = params
        return (
            self.redactor.redact_value(
                await self.service.transactions.rollback(_link(context), token)
            ),
        )


def _link(context: CallContext) -> str:
    return link_key(context.source_id, context.link_name)
