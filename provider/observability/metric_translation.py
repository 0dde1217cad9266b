"""The provider's Prometheus metrics as OpenTelemetry metric data (sans-IO).

One set of instruments serves both exports: the Prometheus endpoint reads them as they are, and
OTLP gets the same numbers translated here. Database and pool series take the names and
attributes of OpenTelemetry's database conventions (`db.client.operation.duration`,
`db.client.connection.*`); the rest keep their own names with a dot after the prefix
(`sqldb_postgres.retries`). Counters and histograms are cumulative from `start_ns`; a `link`
label becomes the calling component's id and link name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

PREFIX = "sqldb_postgres_"
CUMULATIVE = AggregationTemporality.CUMULATIVE

# Prometheus label → attribute; empty values (a success's status code) are left out.
ATTRIBUTE_NAMES = {
    "db_namespace": "db.namespace",
    "db_operation_name": "db.operation.name",
    "db_response_status_code": "db.response.status_code",
    "error_type": "error.type",
}


@dataclass(frozen=True)
class Target:
    name: str
    unit: str
    description: str
    kind: str = "as-is"  # "updown": a gauge exported as a non-monotonic sum
    fixed: Mapping[str, str] = field(default_factory=dict)  # attributes added to every point


CONNECTIONS = "{connection}"
TARGETS = {
    f"{PREFIX}operation_duration_seconds": Target(
        "db.client.operation.duration", "s", "Duration of database client operations."
    ),
    f"{PREFIX}pool_acquire_wait_seconds": Target(
        "db.client.connection.wait_time",
        "s",
        "The time it took to obtain an open connection from the pool (calls that found one "
        "free at once are not counted).",
    ),
    f"{PREFIX}pool_in_use": Target(
        "db.client.connection.count",
        CONNECTIONS,
        "The number of connections that are currently in state described by the state attribute.",
        "updown",
        {"db.client.connection.state": "used"},
    ),
    f"{PREFIX}pool_idle": Target(
        "db.client.connection.count",
        CONNECTIONS,
        "The number of connections that are currently in state described by the state attribute.",
        "updown",
        {"db.client.connection.state": "idle"},
    ),
    f"{PREFIX}pool_size": Target(
        "db.client.connection.max",
        CONNECTIONS,
        "The maximum number of open connections allowed.",
        "updown",
    ),
    f"{PREFIX}pool_waiting": Target(
        "db.client.connection.pending_requests",
        "{request}",
        "The number of current pending requests for an open connection.",
        "updown",
    ),
}


def target_of(family: Any) -> Target:
    """Where a Prometheus family goes: its convention name, or its own name with a dot."""
    known = TARGETS.get(family.name)
    if known is not None:
        return known
    name = family.name
    unit = ""
    if name.endswith("_seconds"):
        name, unit = name[: -len("_seconds")], "s"
    if name.startswith(PREFIX):
        name = "sqldb_postgres." + name[len(PREFIX) :]
    return Target(name, unit, family.documentation)


def attributes_of(labels: Mapping[str, str], target: Target) -> dict[str, str]:
    found: dict[str, str] = {}
    if target.name.startswith("db."):
        found["db.system.name"] = "postgresql"
    for label, value in labels.items():
        if label == "link":
            component, _, link_name = value.partition("#")
            found["wasmcloud.component.id"] = component
            found["wasmcloud.link.name"] = link_name or "default"
            if target.name.startswith("db.client.connection."):
                found["db.client.connection.pool.name"] = value
        elif label == "server":  # a server budget's "host:port"
            host, _, port = value.rpartition(":")
            found["server.address"], found["server.port"] = host, port
        elif value:
            found[ATTRIBUTE_NAMES.get(label, label)] = value
    found.update(target.fixed)
    return found


def _histogram_points(
    family: Any, target: Target, start_ns: int, now_ns: int
) -> list[HistogramDataPoint]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"buckets": [], "sum": 0.0})
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(sample.labels["le"]), int(sample.value)))
        elif sample.name.endswith("_sum"):
            entry["sum"] = float(sample.value)
    points = []
    for key, entry in series.items():
        cumulative = sorted(entry["buckets"])
        if not cumulative:
            continue
        counts, below = [], 0
        for _, total in cumulative:
            counts.append(total - below)
            below = total
        bounds = [bound for bound, _ in cumulative if not math.isinf(bound)]
        points.append(
            HistogramDataPoint(
                attributes=attributes_of(dict(key), target),
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=below,
                sum=entry["sum"],
                bucket_counts=counts,
                explicit_bounds=bounds,
                min=None,  # type: ignore[arg-type]  # not kept; optional in OTLP
                max=None,  # type: ignore[arg-type]
            )
        )
    return points


def _number_points(
    family: Any, target: Target, start_ns: int, now_ns: int
) -> list[NumberDataPoint]:
    wanted = family.name + "_total" if family.type == "counter" else family.name
    return [
        NumberDataPoint(
            attributes=attributes_of(sample.labels, target),
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            value=sample.value,
        )
        for sample in family.samples
        if sample.name == wanted
    ]


def translate(families: Iterable[Any], start_ns: int, now_ns: int) -> list[Metric]:
    """OpenTelemetry metrics for Prometheus families (`registry.collect()`); families that
    share a convention name (connections used and idle) become one metric."""
    merged: dict[str, tuple[Target, str, list[Any]]] = {}  # points: one kind per name
    for family in families:
        target = target_of(family)
        points: list[Any]
        if family.type == "histogram":
            kind, points = "histogram", _histogram_points(family, target, start_ns, now_ns)
        elif family.type == "counter":
            kind, points = "counter", _number_points(family, target, start_ns, now_ns)
        elif family.type == "gauge":
            kind = "updown" if target.kind == "updown" else "gauge"
            points = _number_points(family, target, start_ns, now_ns)
        else:
            continue  # info, summary, …: none of ours
        if not points:
            continue
        if target.name in merged:
            merged[target.name][2].extend(points)
        else:
            merged[target.name] = (target, kind, points)
    metrics = []
    for name, (target, kind, series) in merged.items():
        data: Any
        if kind == "histogram":
            data = Histogram(data_points=series, aggregation_temporality=CUMULATIVE)
        elif kind == "counter":
            data = Sum(data_points=series, aggregation_temporality=CUMULATIVE, is_monotonic=True)
        elif kind == "updown":
            data = Sum(data_points=series, aggregation_temporality=CUMULATIVE, is_monotonic=False)
        else:
            data = Gauge(data_points=series)
        metrics.append(Metric(name=name, description=target.description, unit=target.unit,
                              data=data))  # fmt: skip
    return metrics
