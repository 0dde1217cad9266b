"""PostgresService without the wire: link bookkeeping that the wire tests cannot see."""

from __future__ import annotations

from typing import Any

from provider.postgres.service import PostgresService
from provider.wrpc.values import Case, Ok


async def test_links_with_share_by_url_share_one_pool(postgres_server: Any, database: str) -> None:
    service = PostgresService()
    shared = {**postgres_server.link_config(database), "POSTGRES_SHARE_CONNECTIONS_BY_URL": "yes"}
    try:
        await service.put_link("a", shared)
        await service.put_link("b", shared)
        await service.put_link("c", postgres_server.link_config(database))  # not shared
        pools = {name: service._pool(service.links[name]) for name in "abc"}
        assert pools["a"] is pools["b"] and pools["c"] is not pools["a"]
        await service.delete_link("a")
        assert isinstance(await service.query("b", "SELECT 1", []), Ok)  # b keeps the pool
    finally:
        await service.close()


async def test_a_changed_link_keeps_its_tokens(
    postgres_server: Any, database: str, make_database: Any
) -> None:
    service = PostgresService()
    try:
        await service.put_link("a", postgres_server.link_config(database))
        token = (await service.prepare("a", "SELECT current_database()")).value
        other = make_database()
        await service.put_link("a", postgres_server.link_config(other))  # e.g. a config update
        result = await service.exec("a", token, [])
        assert result == Ok(1)
        rows = await service.query("a", "SELECT current_database()", [])
        assert rows.value[0][0]["value"] == Case("name", other)
    finally:
        await service.close()
