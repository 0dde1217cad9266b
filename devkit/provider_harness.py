"""Fixtures' helpers: a provider process on a lattice of its own, and a host-side client."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats

from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.model import postgres_package
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient

PACKAGE = postgres_package()
QUERY = PACKAGE.function("query", "query")
BATCH = PACKAGE.function("query", "query-batch")
PREPARE = PACKAGE.function("prepared", "prepare")
EXEC = PACKAGE.function("prepared", "exec")
BEGIN = PACKAGE.function("transactions", "begin")
TX_QUERY = PACKAGE.function("transactions", "query")
TX_EXEC = PACKAGE.function("transactions", "exec")
COMMIT = PACKAGE.function("transactions", "commit")
ROLLBACK = PACKAGE.function("transactions", "rollback")


class RunningProvider:
    def __init__(self, nats_url: str, **host_data: Any) -> None:
        self.host = LatticeHost(nats_url)
        self.log_path = Path(tempfile.mkstemp(prefix="provider-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = ProviderProcess(self.host, log_file=self._log, **host_data)

    def start(self) -> None:
        """For synchronous fixtures."""
        asyncio.run(self.astart())

    async def astart(self) -> None:
        self.process.start()
        nc = await nats.connect(self.host.nats_url)
        try:
            await self.process.wait_healthy(nc)
        finally:
            await nc.close()

    def stop(self) -> None:
        self.process.kill()
        self._log.close()

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


class Caller:
    """One component's view: calls carry its `source-id`."""

    def __init__(self, client: WrpcClient, source_id: str) -> None:
        self.client = client
        self.source_id = source_id
        self.headers = {"source-id": source_id, "link-name": "default"}

    async def query(self, sql: str, params: Sequence[Case] = ()) -> Any:
        (result,) = await self.client.call(QUERY, [sql, list(params)], self.headers)
        return result

    async def batch(self, sql: str) -> Any:
        (result,) = await self.client.call(BATCH, [sql], self.headers)
        return result

    async def prepare(self, sql: str) -> Any:
        (result,) = await self.client.call(PREPARE, [sql], self.headers)
        return result

    async def exec(self, token: str, params: Sequence[Case] = ()) -> Any:
        (result,) = await self.client.call(EXEC, [token, list(params)], self.headers)
        return result

    # --- transactions ---

    async def begin(self, isolation: str = "read-committed", read_only: bool = False) -> Any:
        options = {"isolation": isolation, "read-only": read_only}
        (result,) = await self.client.call(BEGIN, [options], self.headers)
        return result

    async def tx_query(self, tx: str, sql: str, params: Sequence[Case] = ()) -> Any:
        (result,) = await self.client.call(TX_QUERY, [tx, sql, list(params)], self.headers)
        return result

    async def tx_exec(self, tx: str, token: str, params: Sequence[Case] = ()) -> Any:
        (result,) = await self.client.call(TX_EXEC, [tx, token, list(params)], self.headers)
        return result

    async def commit(self, tx: str) -> Any:
        (result,) = await self.client.call(COMMIT, [tx], self.headers)
        return result

    async def rollback(self, tx: str) -> Any:
        (result,) = await self.client.call(ROLLBACK, [tx], self.headers)
        return result


async def wait_linked(caller: Caller, attempts: int = 100, strict: bool = False) -> None:
    """Link puts are applied asynchronously: wait until the caller's link answers (callers of
    links meant to fail use it too, so it raises only when `strict`)."""
    for _ in range(attempts):
        result = await caller.query("SELECT 1")
        if isinstance(result, Ok):
            return
        await asyncio.sleep(0.05)
    if strict:
        raise AssertionError(f"link of {caller.source_id} never answered: {result}")


async def healthy_then_stopped_like_a_host(
    process: ProviderProcess, nats_url: str, timeout: float = 60
) -> None:
    """Start `process`, wait for a healthy answer, stop it as a host does (reply in time)."""
    process.start()
    nc = await nats.connect(nats_url)
    try:
        health = await process.wait_healthy(nc, timeout=timeout)
        assert health["healthy"] is True, health
        stop = await process.stop_like_host(nc)
        assert stop.reply == b"shutting down"
    finally:
        process.kill()
        await nc.close()


async def linked_caller(
    provider: RunningProvider,
    nc: Any,
    client: WrpcClient,
    config: dict[str, str],
    secrets: dict[str, str] | None = None,
) -> Caller:
    """A new component linked to the provider with `config` (and sealed `secrets`)."""
    source_id = new_source_id()
    await provider.host.put_link(nc, provider.host.link_definition(source_id, config, secrets))
    caller = Caller(client, source_id)
    await wait_linked(caller)
    return caller


def new_source_id() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def values_of(rows: Any) -> list[list[Case]]:
    """Rows of a query result as lists of pg-values."""
    return [[entry["value"] for entry in row] for row in rows]


async def wait_until_both_replicas_serve(caller: Caller) -> None:
    """Health was answered by either replica: begin (and roll back) transactions until both
    replicas' ids have appeared in tokens, so both are subscribed."""
    owners: set[str] = set()
    for _ in range(200):
        tx = (await caller.begin()).value
        owners.add(tx.split("_")[1])
        assert await caller.rollback(tx) == Ok(None)
        if len(owners) == 2:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the second replica never took a call")
