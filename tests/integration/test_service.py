"""PostgresService without the wire: link bookkeeping that the wire tests cannot see."""

from __future__ import annotations

import asyncio
from typing import Any

from provider.postgres.service import PostgresService
from provider.wit.values import Case, Ok


async def test_links_with_share_by_url_share_one_pool(postgres_server: Any, database: str) -> None:
    service = PostgresService()
    shared = {**postgres_server.link_config(database), "POSTGRES_SHARE_CONNECTIONS_BY_URL": "yes"}
    try:
        await service.put_link("a", shared)
        await service.put_link("b", shared)
        await service.put_link("c", postgres_server.link_config(database))  # not shared
        pools = {name: service.links[name].pool for name in "abc"}
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


async def test_a_link_update_lets_running_calls_finish(postgres_server: Any, database: str) -> None:
    service = PostgresService()
    config = {**postgres_server.link_config(database), "POSTGRES_POOL_SIZE": "1"}
    try:
        await service.put_link("a", config)
        slow = asyncio.create_task(service.query("a", "SELECT pg_sleep(0.4), 7::int4 AS n", []))
        await asyncio.sleep(0.1)
        # The pool is busy: health is still honest (its probe does not queue behind calls).
        healthy, message = await service.health()
        assert healthy, message
        await service.put_link("a", {**config, "POSTGRES_POOL_SIZE": "2"})  # a new pool
        assert isinstance(await service.query("a", "SELECT 1", []), Ok)  # served at once
        result = await slow
        assert isinstance(result, Ok), result
        assert result.value[0][1]["value"] == Case("int4", 7)
    finally:
        await service.close()


async def test_share_flag_comes_from_config_even_when_a_secret_names_it() -> None:
    from provider.lattice.links import LinkDefinition
    from provider.sqldb.hooks import PostgresProvider

    seen: dict[str, str] = {}

    class Recording(PostgresService):
        async def put_link(self, source_id: str, values: Any) -> None:
            seen.update(values)

    provider = PostgresProvider(Recording())
    link = LinkDefinition.from_json(
        {"source_id": "s", "target": "p",
         "target_config": {"POSTGRES_SHARE_CONNECTIONS_BY_URL": "false"}}
    )  # fmt: skip
    await provider.put_link(link, {"POSTGRES_SHARE_CONNECTIONS_BY_URL": "true", "X": "secret"})
    assert seen == {"POSTGRES_SHARE_CONNECTIONS_BY_URL": "false", "X": "secret"}
