"""The event loop's task count as a Prometheus gauge: a leak of tasks shows before memory does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class EventLoopCollector(Collector):
    """Counts the tasks of `loop` (set once the loop runs) at scrape time, from the scraping
    thread: `asyncio.all_tasks` copies its registry with retries, so a concurrent change costs
    a retry, never a wrong count or an error."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        yield GaugeMetricFamily(
            "sqldb_postgres_asyncio_tasks",
            "Tasks alive in the provider's event loop",
            value=float(len(asyncio.all_tasks(loop))),
        )
