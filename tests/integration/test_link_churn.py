"""Components come and go for months: nothing a deleted link left behind may stay.

Each cycle puts a link under a new name, uses it the ways a component does (a query, a
prepared statement and its exec, a failing statement, a transaction, a call that waits for a
connection), and deletes it. After 500 cycles every per-link structure and every metric series
is back where it was after the first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from provider.postgres.service import PostgresService
from provider.wit.values import Case, Ok

CYCLES = 500


def _footprint(service: PostgresService) -> dict[str, int]:
    """Everything that grows with links: structures and exported series."""
    text = service.metrics.text().decode()
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {
        "links": len(service.links),
        "pools": len(service._pools),
        "refused_links": len(service.refused_links),
        "statement_links": len(service.registry._links),
        "transactions_open": len(service.transactions._open),
        "transactions_per_link": len(service.transactions._per_link),
        "server_budgets": len(list(service.budgets.budgets())),
        "series": len(series),
        "series_naming_a_link": sum('link="c' in line for line in series),
    }


async def _use_and_delete(service: PostgresService, config: dict[str, str], name: str) -> None:
    await service.put_link(name, config)
    assert isinstance(await service.query(name, "SELECT 1", []), Ok)
    token = (await service.prepare(name, "SELECT $1::int4 + 1")).value
    assert isinstance(await service.exec(name, token, [Case("int4", 1)]), Ok)
    assert not isinstance(await service.query(name, "SELEC nonsense", []), Ok)
    begun = await service.transactions.begin(name, {})
    assert isinstance(begun, Ok), begun
    assert isinstance(await service.transactions.commit(name, begun.value), Ok)
    both = [service.query(name, "SELECT pg_sleep(0.001)", []) for _ in range(2)]
    assert all(isinstance(r, Ok) for r in await asyncio.gather(*both))
    await service.delete_link(name)


async def test_500_link_put_delete_cycles_leave_nothing_behind(
    postgres_server: Any, database: str
) -> None:
    service = PostgresService()
    config = {**postgres_server.link_config(database), "POSTGRES_POOL_SIZE": "1"}
    try:
        await service.put_link("steady", config)  # a link that stays: its series stay
        await _use_and_delete(service, config, "c-first")
        await asyncio.sleep(0.1)  # retired pools close in the background
        baseline = _footprint(service)
        assert baseline["series_naming_a_link"] == 0, baseline
        for n in range(CYCLES):
            await _use_and_delete(service, config, f"c{n}")
        await asyncio.sleep(0.1)
        assert _footprint(service) == baseline
        assert len(service._retiring) == 0
    finally:
        await service.close()
