"""The event loop's task count, read at scrape time from the scraping thread."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from provider.observability.loop_metrics import EventLoopCollector


async def test_the_gauge_counts_the_loops_tasks_from_another_thread() -> None:
    registry = CollectorRegistry()
    collector = EventLoopCollector()
    registry.register(collector)
    assert b"sqldb_postgres_asyncio_tasks" not in generate_latest(registry)  # no loop yet

    collector.loop = asyncio.get_running_loop()
    sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(5)]
    try:
        text = (await asyncio.to_thread(generate_latest, registry)).decode()
    finally:
        for task in sleepers:
            task.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
    (line,) = [row for row in text.splitlines() if row.startswith("sqldb_postgres_asyncio_tasks ")]
    assert float(line.split()[1]) == len(asyncio.all_tasks()) + 5  # the test's own task + 5
