"""What observability costs per call: the provider's CPU with OTLP export off, on but the call
not sampled, and on and sampled (`make bench`; `--quick` for a short run).

Two providers run side by side against one database: one with `otel_config` off, one with
traces and metrics on, exporting over OTLP/HTTP to a real receiver in this process (spans
batched every 100 ms, metrics every second, so the exports fall inside every window). The
lean load generator sends the same calls to both, with a W3C `traceparent` whose sampled flag
is off (`-00`: the parent-based sampler records nothing) or on (`-01`: a SERVER span per call
and a CLIENT span per statement). Rounds are interleaved and medians reported; CPU per call is
the provider process's CPU (`/proc/PID/stat`) over the window ÷ calls answered.

Writes `bench/results/tracing.json` and `tracing.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cpu_profile import summarise
from bench.fair_bench import (
    PROFILE,
    RESULTS,
    ROOT,
    Worker,
    _provider_command,
    machine,
    median_of,
    prepare_database,
    process_user_system_seconds,
    start_provider,
    workloads,
)
from devkit.local_nats import running_nats
from devkit.local_postgres import PostgresServer, running_postgres
from host_shim.otlp_receiver import Received, running_otlp_receiver
from host_shim.provider_process import LatticeHost, ProviderProcess

MODES = ("off", "unsampled", "sampled")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass(frozen=True)
class Benched:
    provider: ProviderProcess
    pid: int
    host: LatticeHost
    token: str  # the hot INSERT's statement token on this provider


def thread_seconds(pid: int) -> tuple[float, float]:
    """(the event loop's thread, all other threads): CPU seconds so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    main = others = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            seconds = (int(fields[11]) + int(fields[12])) / tick
            if int(task.name) == pid:
                main += seconds
            else:
                others += seconds
    return main, others


def headers_of(mode: str) -> dict[str, str]:
    """The same headers for every mode but the sampled flag (the off provider ignores it)."""
    flag = "00" if mode == "unsampled" else "01"
    return {"source-id": "bench-component", "link-name": "default",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-{flag}"}  # fmt: skip


SETTLE = 0.25  # after a window: its last span batch (every 100 ms) is exported and counted


def measure(
    args: argparse.Namespace, providers: dict[str, Benched], caller: Worker,
    received: Received,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for name in ("exec", "query-10"):
        for callers in args.callers:
            samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            print(f"  {name} x {callers} callers ...", end="\r", flush=True)
            for mode in MODES:  # warm-up: statements prepared on both providers
                one = providers["off" if mode == "off" else "on"]
                workload = next(w for w in workloads(one.token) if w.call == name)
                caller.run(_provider_command(one.host, workload, headers_of(mode), callers, 0.3))
            time.sleep(SETTLE)
            for _ in range(args.rounds):
                for mode in MODES:
                    one = providers["off" if mode == "off" else "on"]
                    workload = next(w for w in workloads(one.token) if w.call == name)
                    command = _provider_command(one.host, workload, headers_of(mode), callers,
                                                args.seconds)  # fmt: skip
                    user, system = process_user_system_seconds(one.pid)
                    _, others = thread_seconds(one.pid)
                    spans_before = len(received.spans)
                    profiled = args.profile == f"{mode}:{name}:{callers}" and not samples[mode]
                    if profiled:
                        os.kill(one.pid, signal.SIGUSR1)
                    answer = caller.run(command)
                    if profiled:
                        os.kill(one.pid, signal.SIGUSR2)
                        time.sleep(0.3)
                        print(summarise(PROFILE, answer["calls"]), flush=True)
                    time.sleep(SETTLE)
                    user_after, system_after = process_user_system_seconds(one.pid)
                    _, others_after = thread_seconds(one.pid)
                    calls = max(answer["calls"], 1)
                    answer["spans_per_call"] = (len(received.spans) - spans_before) / calls
                    answer["cpu_us"] = (user_after - user + system_after - system) / calls * 1e6
                    answer["threads_us"] = (others_after - others) / calls * 1e6
                    samples[mode].append(answer)
            row: dict[str, Any] = {"call": name, "callers": callers}
            for mode in MODES:
                row[f"{mode}_cpu_us"] = round(median_of(samples[mode], "cpu_us"), 1)
                row[f"{mode}_p50_ms"] = round(median_of(samples[mode], "p50_ms"), 3)
                row[f"{mode}_errors"] = sum(r["errors"] for r in samples[mode])
                # CPU off the event loop's thread: the span batch exporter, metric export
                row[f"{mode}_other_threads_us"] = round(median_of(samples[mode], "threads_us"), 1)
            # Every sampled call's spans arrived (none dropped from a full queue, which would
            # make tracing look cheap), and an unsampled call made none.
            row["sampled_spans_per_call"] = round(
                median_of(samples["sampled"], "spans_per_call"), 2
            )
            if any(r["spans_per_call"] for r in samples["unsampled"] + samples["off"]):
                raise SystemExit(f"{name} x {callers}: unsampled or off calls made spans")
            row["unsampled_added_us"] = round(row["unsampled_cpu_us"] - row["off_cpu_us"], 1)
            row["sampled_added_us"] = round(row["sampled_cpu_us"] - row["off_cpu_us"], 1)
            rows.append(row)
            print(f"{name:<9} {callers:>7} {row['off_cpu_us']:>8.0f}"
                  f" {row['unsampled_cpu_us']:>10.0f} {row['sampled_cpu_us']:>8.0f}"
                  f" {row['unsampled_added_us']:>+9.0f} {row['sampled_added_us']:>+8.0f}",
                  flush=True)  # fmt: skip
            threads = ", ".join(f"{m} {row[f'{m}_other_threads_us']:.0f}" for m in MODES)
            print(f"    of which off the event loop's thread (µs/call): {threads}; spans per "
                  f"sampled call {row['sampled_spans_per_call']}", flush=True)  # fmt: skip
    spans = len(received.span_list())
    print(f"the receiver got {spans} spans and {len(received.metric_requests)} metric exports")
    if spans == 0 or not received.metric_requests:
        raise SystemExit("nothing was exported: the 'on' rows measured nothing")
    return rows


async def run(args: argparse.Namespace, nats_url: str, server: PostgresServer,
              endpoint: str) -> dict[str, Benched]:  # fmt: skip
    database = await prepare_database(server)
    otel = {"enable_observability": True, "observability_endpoint": endpoint}
    providers = {}
    for mode, config in (("off", None), ("on", otel)):
        profiled = bool(args.profile) and args.profile.startswith("off:") == (mode == "off")
        provider, host, token = await start_provider(nats_url, server, database, profiled,
                                                     otel_config=config)  # fmt: skip
        assert provider.process is not None
        providers[mode] = Benched(provider, provider.process.pid, host, token)
    return providers


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| call | callers | off µs/call | on, not sampled | on, sampled | added (not sampled) "
        "| added (sampled) | of which off the loop's thread (not sampled / sampled) | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        errors = sum(row[f"{mode}_errors"] for mode in MODES)
        lines.append(
            f"| `{row['call']}` | {row['callers']} | {row['off_cpu_us']:.0f} | "
            f"{row['unsampled_cpu_us']:.0f} | {row['sampled_cpu_us']:.0f} | "
            f"{row['unsampled_added_us']:+.0f} | {row['sampled_added_us']:+.0f} | "
            f"{row['unsampled_other_threads_us']:.0f} / {row['sampled_other_threads_us']:.0f} | "
            f"{errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of short windows")
    parser.add_argument("--callers", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument(
        "--profile", metavar="MODE:CALL:CALLERS", help="sample a provider's CPU in that row"
    )
    args = parser.parse_args(argv)
    args.seconds = 0.7 if args.quick else 2.0
    args.rounds = 1 if args.quick else 3
    # The host passes OTEL_* through: batches every 100 ms and metrics every second, so the
    # exporters' work lands inside the measured windows.
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = "1000"
    started = time.perf_counter()
    print("starting NATS, PostgreSQL, an OTLP receiver and two providers ...", flush=True)
    with (
        running_nats() as nats_url,
        running_postgres() as server,
        running_otlp_receiver() as (
            endpoint,
            received,
        ),
    ):
        providers = asyncio.run(run(args, nats_url, server, endpoint))
        caller = Worker(["bench.lean_caller"], {"NATS_URL": nats_url})
        try:
            print(f"{'call':<9} {'callers':>7} {'off µs':>8} {'unsampled':>10} {'sampled':>8} "
                  f"{'+unsamp.':>9} {'+sampled':>8}", flush=True)  # fmt: skip
            rows = measure(args, providers, caller, received)
        finally:
            caller.close()
            for one in providers.values():
                one.provider.kill()
    document = {"machine": machine(), "quick": args.quick, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracing.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS / "tracing.md").write_text(f"{document['machine']}\n\n{markdown(rows)}\n")
    print(f"wrote {(RESULTS / 'tracing.md').relative_to(ROOT)} in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return 1 if any(row[f"{mode}_errors"] for row in rows for mode in MODES) else 0


if __name__ == "__main__":
    sys.exit(main())
