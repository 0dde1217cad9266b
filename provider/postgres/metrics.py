"""Pool and statement metrics, in Prometheus' text format (prometheus-client).

Counters and the acquire-wait histogram are updated where things happen; pool sizes and
statement counts are read from the live objects at scrape time by `ServiceCollector`, so there
is no second copy of state to keep in step. `Metrics.summary(link)` condenses the same numbers
for the health message.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from provider.common.bounded_tables import remember
from provider.postgres.retry import first_keyword

# Why a statement was prepared on a connection.
REPREPARE_CAUSES = (
    "first_use",  # this connection had not prepared it yet (includes a changed pin)
    "evicted",  # this connection had it but evicted it from its bounded cache
    "does_not_exist",  # SQLSTATE 26000: DISCARD/DEALLOCATE, however phrased
    "plan_changed",  # "cached plan must not change result type" after DDL
)


OPERATION_LABELS = ("link", "db_namespace", "db_operation_name", "db_response_status_code",
                    "error_type")  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.acquire_wait = LeanHistogram(
            "sqldb_postgres_pool_acquire_wait_seconds",
            "Time a call waited for a connection of its link's pool (calls that found one "
            "free at once are not counted)",
            ("link",),
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry,
        )
        # OpenTelemetry's db.client.operation.duration (exported over OTLP under that name):
        # one observation per statement sent, a failed one with its SQLSTATE and error type.
        self.operation_duration = LeanHistogram(
            "sqldb_postgres_operation_duration_seconds",
            "Time a database statement took, prepare included, by link, database, operation "
            "and (on failure) SQLSTATE and error type",
            OPERATION_LABELS,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10),
            registry=self.registry,
        )
        self.durations = OperationDurations(self.operation_duration)
        self.hand_over_reset = Histogram(
            "sqldb_postgres_pool_hand_over_reset_seconds",
            "Full session resets when a shared pool's connection passes to another link",
            ["link"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1),
            registry=self.registry,
        )
        self.statements_registered = Counter(
            "sqldb_postgres_statements_registered",
            "Prepared-statement tokens handed out",
            ["link"],
            registry=self.registry,
        )
        self.prepares = Counter(
            "sqldb_postgres_statement_prepares",
            "Server-side prepares, by cause",
            ["link", "cause"],
            registry=self.registry,
        )
        self.evictions = Counter(
            "sqldb_postgres_statement_evictions",
            "Statements dropped at a bound: a link's tokens or a connection's cache",
            ["link", "level"],
            registry=self.registry,
        )
        self.retries = Counter(
            "sqldb_postgres_retries",
            "Statements run again because the first attempt could not have run",
            ["link", "reason"],
            registry=self.registry,
        )
        self.transactions = Counter(
            "sqldb_postgres_transactions",
            "Interactive transactions, by outcome: begun, committed, rolled_back, "
            "rolled_back_after_error, timed_out, serialization_failure, lost, "
            "commit_outcome_unknown, refused_too_many, link_removed; and forwarded calls",
            ["link", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "sqldb_postgres_errors",
            "Errors returned to guests, by WIT variant",
            ["link", "variant"],
            registry=self.registry,
        )

    def watch(self, snapshot: Callable[[], dict[str, dict[str, Any]]]) -> None:
        """Report live pool/statement state; `snapshot()` maps link → numbers."""
        self.registry.register(ServiceCollector(snapshot))

    def forget_link(self, link: str) -> None:
        """Drop every series labelled with `link`: its link was deleted, and a lattice with
        component churn must not grow the registry (and each scrape) forever."""
        for family in (
            self.hand_over_reset, self.statements_registered, self.prepares, self.evictions,
            self.retries, self.transactions, self.errors,
        ):  # fmt: skip
            # prometheus-client offers `remove` but no way to list the label values in use.
            for labels in list(family._metrics):
                if labels[0] == link:
                    family.remove(*labels)
        for histogram in (self.acquire_wait, self.operation_duration):
            histogram.forget(link)

    def watch_servers(self, snapshot: Callable[[], dict[str, dict[str, Any]]]) -> None:
        """Report each server's connection budget; `snapshot()` maps server → numbers."""
        self.registry.register(ServerCollector(snapshot))

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def count(self, counter: Counter, **labels: str) -> float:
        """The current value of one labelled counter (for health summaries and tests)."""
        for metric in counter.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def prepares_by_cause(self, link: str) -> dict[str, int]:
        return {
            cause: int(self.count(self.prepares, link=link, cause=cause))
            for cause in REPREPARE_CAUSES
        }


# PostgreSQL's statement keywords: a metric label and a span name are one of these or OTHER,
# so no component can grow a series per statement by starting its SQL with a new word.
OPERATIONS = frozenset(
    ("ABORT", "ALTER", "ANALYZE", "BATCH", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER",
     "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO",
     "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD",
     "LOCK", "MERGE", "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE",
     "RESET", "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW", "START",
     "TABLE", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "VALUES", "WITH")
)  # fmt: skip
REMEMBERED_SQL_LENGTH = 1024  # longer texts are named each time (from their start), not kept


def operation_name(sql: str) -> str:
    """`SELECT`, `INSERT`, … as `db.operation.name` wants it; OTHER for anything else."""
    name = first_keyword(sql).upper()
    return name if name in OPERATIONS else "OTHER"


class OperationDurations:
    """Feeds `operation_duration`: one observation per statement, its operation named by the
    statement's first keyword (remembered per SQL text, so a hot statement pays a dict lookup)."""

    MAX_REMEMBERED = 4096  # distinct SQL texts; `query` may send any number of them

    def __init__(self, histogram: LeanHistogram) -> None:
        self._histogram = histogram
        self._operations: dict[str, str] = {}

    def operation(self, sql: str) -> str:
        name = self._operations.get(sql)
        if name is None:
            name = operation_name(sql)
            if len(sql) <= REMEMBERED_SQL_LENGTH:
                remember(self._operations, sql, name, self.MAX_REMEMBERED)
        return name

    def succeeded(self, link: str, database: str, operation: str, seconds: float) -> None:
        self._histogram.child((link, database, operation, "", "")).observe(seconds)

    def failed(
        self, link: str, database: str, operation: str, seconds: float, error: BaseException
    ) -> None:
        status = getattr(error, "sqlstate", None) or ""
        series = (link, database, operation, status, status or type(error).__name__)
        self._histogram.child(series).observe(seconds)


class LeanHistogram(Collector):
    """A labelled histogram observed on every busy call or statement: `observe` is a bisect
    and two additions (prometheus-client's takes a lock and updates three value objects).
    Observed on the event loop's thread only; scrapes read the numbers as they are."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self._bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], LeanHistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LeanHistogramChild:
        return self.child(values)

    def forget(self, first_label: str) -> None:
        """Drop the series whose first label value is `first_label` (a deleted link's)."""
        for values in [v for v in self._children if v[0] == first_label]:
            del self._children[values]

    def child(self, values: tuple[str, ...]) -> LeanHistogramChild:
        """The series of these label values (a tuple the caller may keep and reuse)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labels):
                raise ValueError(f"{self._name} takes labels {self._labels}, got {values}")
            child = self._children[values] = LeanHistogramChild(self._bounds)
        return child

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, child in sorted(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, math.inf), child.counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(values), buckets, child.total)
        yield family


class LeanHistogramChild:
    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.total += value


class ServiceCollector(Collector):
    _GAUGES = (
        ("pool_size", "Connections a link's pool may open"),
        ("pool_open", "Connections open"),
        ("pool_in_use", "Connections serving a call"),
        ("pool_idle", "Connections open and idle"),
        ("pool_waiting", "Calls waiting for a connection"),
        ("statements", "Prepared-statement tokens the link holds"),
        ("connection_statements", "Statements prepared on the link's connections, summed"),
        ("transactions_open", "Interactive transactions open (each holds a connection)"),
        ("transactions_oldest_seconds", "Age of the link's oldest open transaction"),
    )

    def __init__(self, snapshot: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._snapshot()
        for key, help_text in self._GAUGES:
            family = GaugeMetricFamily(f"sqldb_postgres_{key}", help_text, labels=["link"])
            for link, numbers in sorted(state.items()):
                family.add_metric([link], float(numbers.get(key, 0)))
            yield family


class ServerCollector(Collector):
    """Each PostgreSQL server's connection budget (see server_budget), labelled host:port."""

    _GAUGES = (
        ("server_connections_budget", "Connections this replica may hold on the server"),
        ("server_connections_open", "Connections open (or opening) on the server, all links"),
        ("server_connections_waiting", "Calls waiting for room in the server's budget"),
    )
    _COUNTERS = (
        ("server_room_closes", "Idle connections closed to give another link room"),
        ("server_hand_overs", "Connections handed to another link with the same settings"),
        ("server_refusals", "Connections the server refused (53300 too many clients)"),
    )

    def __init__(self, snapshot: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = sorted(self._snapshot().items())
        for key, help_text in self._GAUGES:
            gauge = GaugeMetricFamily(f"sqldb_postgres_{key}", help_text, labels=["server"])
            for server, numbers in state:
                gauge.add_metric([server], float(numbers[key]))
            yield gauge
        for key, help_text in self._COUNTERS:
            counter = CounterMetricFamily(f"sqldb_postgres_{key}", help_text, labels=["server"])
            for server, numbers in state:
                counter.add_metric([server], float(numbers[key]))
            yield counter
