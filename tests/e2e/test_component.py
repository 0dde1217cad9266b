"""A real Wasm component → wasmtime → host shim → NATS → provider → PostgreSQL, and back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from wasmtime.component import FuncType, OptionType, ResultType, ValType, VariantType

from devkit.provider_harness import QUERY, Caller, RunningProvider, wait_linked
from host_shim.component_host import ComponentError, ComponentHost
from host_shim.otlp_receiver import attributes, running_otlp_receiver
from host_shim.wasm_values import is_tagged
from provider.wit.values import Case
from provider.wrpc.client import WrpcClient

ROOT = Path(__file__).resolve().parents[2]
COMPONENT_ID = "sqldb_postgres_example-example"


@pytest.fixture(scope="session")
def example_wasm() -> Path:
    """Built once (componentize-py, ~7 s; skipped when up to date)."""
    subprocess.run([sys.executable, str(ROOT / "components" / "build.py")], check=True)
    return ROOT / "components" / "example" / "build" / "example.wasm"


@pytest.fixture
async def client(
    nats_url: str, provider: RunningProvider, postgres_server: Any, make_database: Any
) -> AsyncIterator[WrpcClient]:
    nc = await nats.connect(nats_url)
    config = postgres_server.link_config(make_database())
    await provider.host.put_link(nc, provider.host.link_definition(COMPONENT_ID, config))
    client = WrpcClient(nc, provider.host.prefix, result_timeout=60)
    await client.start()
    await wait_linked(Caller(client, COMPONENT_ID), strict=True)  # applied asynchronously
    yield client
    await client.close()
    await nc.close()


def host_for(wasm: Path, client: WrpcClient) -> ComponentHost:
    headers = {"source-id": COMPONENT_ID, "link-name": "default"}
    return ComponentHost(wasm, client, headers, asyncio.get_running_loop())


async def test_the_component_runs_its_workload_through_the_provider(
    example_wasm: Path, client: WrpcClient
) -> None:
    host = host_for(example_wasm, client)
    summary = json.loads(await asyncio.to_thread(host.call_export, "run"))
    assert summary["written"] == 20  # 20 execs, 1 row each
    assert summary["updated"] == 5  # UPDATE ... WHERE pages >= 15
    rows = summary["rows"]
    assert [row["visitor"] for row in rows] == [["Text", f"visitor-{i}"] for i in range(15, 20)]
    assert [row["pages"] for row in rows] == [["Int4", i + 1] for i in range(15, 20)]
    assert [row["score"] for row in rows] == [["Float8", i * 1.5] for i in range(15, 20)]
    assert rows[0]["tags"] == ["TextArray", ["regular", "group-0"]]
    assert rows[3]["meta"] == ["Jsonb", '{"vip": true, "visit": 18}']
    assert [row["busy"] for row in rows] == [["Bool", i + 1 >= 19] for i in range(15, 20)]
    assert summary["error"]["variant"] == "InvalidQuery"
    assert "42P01" in summary["error"]["message"]
    assert summary["unknown_token"] == {"variant": "UnknownPreparedQuery", "message": None}
    assert host.import_calls == 27
    # A fresh Store per invocation: the component runs again.
    again = json.loads(await asyncio.to_thread(host.call_export, "run"))
    assert again["written"] == 20


async def test_the_component_transfers_in_a_serializable_transaction(
    example_wasm: Path, client: WrpcClient
) -> None:
    """The example's `transfer`: read, decide, write atomically; concurrent transfers retry on
    serialization failures and money is never created or lost."""
    host = host_for(example_wasm, client)

    async def transfer(source: int, target: int, amount: int) -> dict[str, Any]:
        answer = await asyncio.to_thread(host.call_export, "transfer", source, target, amount)
        return dict(json.loads(answer))

    assert (await transfer(1, 2, 30)) == {"committed": True, "attempts": 1}
    refused = await transfer(1, 2, 1000)
    assert refused["committed"] is False and "balance 70 < 1000" in refused["reason"]
    # As many at once as the link allows (half its pool of 8): they conflict and retry.
    outcomes = await asyncio.gather(*(transfer(1 + i % 2, 2 - i % 2, 5) for i in range(4)))
    assert all(outcome["committed"] for outcome in outcomes), outcomes
    outcomes += await asyncio.gather(*(transfer(1 + i % 2, 2 - i % 2, 5) for i in range(4)))
    headers = {"source-id": COMPONENT_ID}
    (total,) = await client.call(QUERY, ["SELECT sum(balance)::int8 FROM accounts", []], headers)
    assert total.value[0][0]["value"] == Case("int8", 200)  # both accounts started with 100
    (logged,) = await client.call(QUERY, ["SELECT count(*)::int8 FROM transfers", []], headers)
    assert logged.value[0][0]["value"] == Case("int8", 9)  # each committed transfer, once


async def test_imports_are_checked_against_wit(example_wasm: Path, client: WrpcClient) -> None:
    host = host_for(example_wasm, client)
    names = sorted(host.imported_functions())
    assert names == [
        "wasmcloud:postgres/prepared@0.1.1-draft#exec",
        "wasmcloud:postgres/prepared@0.1.1-draft#prepare",
        "wasmcloud:postgres/query@0.1.1-draft#query",
        "wasmcloud:postgres/query@0.1.1-draft#query-batch",
        *(f"wasmcloud:postgres/transactions@0.1.1-draft#{name}"
          for name in ("begin", "commit", "exec", "query", "rollback")),
    ]  # fmt: skip


def _variant_types(t: ValType | None, found: list[Any]) -> None:
    if isinstance(t, VariantType):
        found.append(t)
        for _, payload in t.cases:
            _variant_types(payload, found)
    elif isinstance(t, OptionType):
        found.append(t)
        _variant_types(t.payload, found)
    elif isinstance(t, ResultType):
        found.append(t)
        _variant_types(t.ok, found)
        _variant_types(t.err, found)


async def test_tagging_rule_is_wasmtimes(example_wasm: Path, client: WrpcClient) -> None:
    host = host_for(example_wasm, client)
    found: list[Any] = []
    tagged = {}
    for key, (_, func_type) in host.imported_functions().items():
        assert isinstance(func_type, FuncType)
        for _, param in func_type.params:
            _variant_types(param, found)
        _variant_types(func_type.result, found)
        result = func_type.result
        assert isinstance(result, ResultType)
        interface, function = key.split("/")[1].split("@")[0], key.split("#")[1]
        tagged[f"{interface}.{function}"] = is_tagged([("ok", result.ok), ("err", result.err)])
    for t in found:
        cases = list(t.cases) if isinstance(t, VariantType) else (
            [("none", None), ("some", t.payload)] if isinstance(t, OptionType)
            else [("ok", t.ok), ("err", t.err)]
        )  # fmt: skip
        assert is_tagged(cases) == t._tagged()  # pinned to wasmtime-py's own rule
    # As ../shared/spec/component-host.md observed them.
    observed = {"query.query": False, "query.query-batch": False, "prepared.prepare": True,
                "prepared.exec": False}  # fmt: skip
    assert {key: tagged[key] for key in observed} == observed
    assert {key for key in tagged if key.startswith("transactions.")} == {
        f"transactions.{name}" for name in ("begin", "query", "exec", "commit", "rollback")
    }


async def test_a_provider_that_does_not_answer_is_reported(
    example_wasm: Path, nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    nobody = WrpcClient(nc, "no-lattice.no-provider", handshake_timeout=1)
    await nobody.start()
    try:
        host = host_for(example_wasm, nobody)
        with pytest.raises(ComponentError, match="the provider did not answer: NoResponders"):
            await asyncio.to_thread(host.call_export, "run")
    finally:
        await nobody.close()
        await nc.close()


def run_host_shim(*arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "host_shim", "wadm.yaml", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = completed.stdout
    assert "imports match wit/" in output
    assert "written: 20" in output and "updated: 5" in output
    assert '"variant": "InvalidQuery"' in output
    assert "provider stopped as a host stops it: 'shutting down' after" in output
    return output


def test_host_shim_runs_the_manifest_with_the_provider_from_its_archive(
    example_wasm: Path, provider_par: Path
) -> None:
    output = run_host_shim()
    assert f"provider archive {provider_par}: sqldb-postgres 0.2.0" in output
    assert "x86_64-linux hash verified, extracted to " in output
    assert "wasmcloudcache" in output


def test_host_shim_runs_the_provider_from_source_when_asked(example_wasm: Path) -> None:
    output = run_host_shim("--from-source")
    assert "provider from source: python -m provider" in output
    assert "provider archive" not in output


def test_the_reflection_cache_is_pinned_to_the_wasmtime_it_was_written_for(
    example_wasm: Path,
) -> None:
    from importlib.metadata import version

    from host_shim import wasmtime_reflection_cache

    assert version("wasmtime").startswith("50.")  # it wraps wasmtime-py 50's internals
    wasmtime_reflection_cache.install()
    assert wasmtime_reflection_cache.installed()
    from wasmtime.component import VariantType

    assert hasattr(VariantType.cases.fget, "cache")  # type: ignore[attr-defined]


def test_host_shim_traces_the_invocations_and_the_provider_joins_them(
    example_wasm: Path,
) -> None:
    """An endpoint given as a host takes it: the shim's invocation spans and the provider's
    call and statement spans arrive in one trace per invocation, the provider's calls as
    children of the invocation."""
    with running_otlp_receiver() as (url, received):
        output = run_host_shim("--from-source", "--override-observability-endpoint", url)
        line = next(x for x in output.splitlines() if "traces exported to" in x)
        trace_ids = line.rsplit(": ", 1)[1].split(", ")
        assert len(trace_ids) == 3  # run and two transfers
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            spans = received.span_list()
            if {s.trace_id.hex() for s in spans if s.kind == 2} >= set(trace_ids):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the provider's spans of {trace_ids} did not all arrive")
        run_trace = [s for s in received.span_list() if s.trace_id.hex() == trace_ids[0]]
        invocation = next(s for s in run_trace if s.name.endswith("/run"))
        calls = [s for s in run_trace if s.kind == 2]  # the provider's SERVER spans
        statements = [s for s in run_trace if s.kind == 3]
        assert len(calls) > 10 and statements
        assert {c.parent_span_id for c in calls} == {invocation.span_id}
        services = {attributes(r)["service.name"] for r in received.resources}
        assert services == {"host-shim", "sqldb-postgres-provider"}
        transfer = [s for s in received.span_list() if s.trace_id.hex() == trace_ids[1]]
        methods = {attributes(s).get("rpc.method") for s in transfer if s.kind == 2}
        assert {"begin", "commit"} <= methods
        operations = {attributes(s).get("db.operation.name") for s in transfer if s.kind == 3}
        assert {"BEGIN", "SELECT", "UPDATE", "COMMIT"} <= operations  # every statement sent
        batch = next(s for s in calls if attributes(s)["rpc.method"] == "query-batch")
        (batched,) = [s for s in statements if s.parent_span_id == batch.span_id]
        assert attributes(batched)["db.operation.name"] == "BATCH"
