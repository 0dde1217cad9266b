"""The replicas' shared statement bucket over months: live tokens only, one request per link
delete, and a full bucket said once (a real NATS server with JetStream)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from provider.lattice.host_data import HostData
from provider.lattice.services import KeyValueBucket, LatticeServices
from provider.postgres.statements import SHARED_FULL, StatementRegistry
from provider.sqldb.statement_store import SharedStatementStore

CHURNS = 10_000
BOUND = 50


class CountingBucket(KeyValueBucket):
    """The real bucket, counting the requests each operation makes."""

    def __init__(self, bucket: KeyValueBucket) -> None:
        self.__dict__.update(bucket.__dict__)  # the same bucket, through the same handles
        self.requests = 0

    async def put(self, key: str, value: bytes) -> None:
        self.requests += 1
        await super().put(key, value)

    async def erase(self, key: str) -> None:
        self.requests += 1
        await super().erase(key)

    async def erase_prefix(self, prefix: str) -> None:
        self.requests += 1
        await super().erase_prefix(prefix)

    async def keys(self) -> list[str]:
        self.requests += 1
        return await super().keys()


async def _store(nc: Any, max_bytes: int | None = None) -> tuple[SharedStatementStore, Any]:
    services = LatticeServices(nc, HostData(lattice_rpc_prefix=f"l{uuid.uuid4().hex[:8]}"))
    if max_bytes is None:
        store = await SharedStatementStore.open(services)
    else:
        bucket = await services.key_value(f"small_{uuid.uuid4().hex[:8]}", "test", max_bytes)
        store = SharedStatementStore(bucket)
    return store, store._bucket


async def test_10000_token_churns_leave_only_the_live_tokens(nc: Any) -> None:
    store, bucket = await _store(nc)
    registry = StatementRegistry(shared=store)
    for n in range(CHURNS):
        record, _ = registry.register("app", f"SELECT {n}", BOUND)
        await registry.share("app", record)
    messages, stored_bytes = await bucket.stored()
    assert messages == BOUND + 1  # the live tokens, and the probe written when it was opened
    assert registry.count("app") == BOUND
    assert not registry.shared_full
    print(f"bucket after {CHURNS} churns: {messages} messages, {stored_bytes} bytes")


async def test_a_link_delete_is_one_request_whatever_other_links_hold(nc: Any) -> None:
    store, bucket = await _store(nc)
    counting = CountingBucket(bucket)
    store._bucket = counting
    registry = StatementRegistry(shared=store)
    for link, count in (("gone", 20), ("stays", 1_000)):
        for n in range(count):
            record, _ = registry.register(link, f"SELECT {n}", 10_000)
            await registry.share(link, record)
    counting.requests = 0
    await registry.forget_shared("gone")
    assert counting.requests == 1
    messages, _ = await bucket.stored()
    assert messages == 1_000 + 1
    kept = [key for key in await bucket.keys() if key != "probe"]
    assert len(kept) == 1_000


async def test_a_full_bucket_is_said_once_and_cleared_when_room_comes_back(
    nc: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = await _store(nc, max_bytes=4096)
    registry = StatementRegistry(shared=store)
    caplog.set_level(logging.INFO, logger="provider.postgres.statements")
    for n in range(100):  # ~150 bytes a record: the bucket fills after a couple of dozen
        record, _ = registry.register("app", f"SELECT {n} AS {'x' * 40}", 10_000)
        await registry.share("app", record)
    assert registry.shared_full
    assert [r.message for r in caplog.records].count(SHARED_FULL) == 1
    assert not any("not shared" in r.message for r in caplog.records)  # no per-prepare line
    await registry.forget_shared("app")  # e.g. the link deleted: room again
    registry.forget_link("app")
    record, _ = registry.register("app", "SELECT 'again'", 10_000)
    await registry.share("app", record)
    assert not registry.shared_full
    assert "the shared statement store has room again" in [r.message for r in caplog.records]
