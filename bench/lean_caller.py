"""The benchmark's load generator: plays a wasmCloud host's wRPC calls with almost no CPU.

Run as a child process of `bench.fair_bench`, one JSON command per stdin line, one JSON answer
per stdout line. A call is the wRPC exchange a host makes: the invocation (params in its
payload, the host's headers, reply-to `rx`), then, on the provider's handshake, the empty end of
the params stream on `Rs.params`; the results arrive on `rx.results`, ended by an empty message.
Invocations are pre-encoded by the parent, so a call costs a dict lookup, a bytes join and a
future here. An answer is counted as an error unless it is `ok` (and, for queries, holds the
expected row count).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvloop

from bench.lean_nats import LeanConnection
from provider.nats.wire import Msg, pub_command


@dataclass(slots=True)
class _Call:
    done: asyncio.Future[bytes]
    results: list[bytes] = field(default_factory=list)


class LeanWrpcCaller:
    def __init__(self) -> None:
        self._inbox = f"_INBOX.{uuid.uuid4().hex}"
        self._calls: dict[str, _Call] = {}
        self._next = 0
        self.connection: LeanConnection | None = None

    async def start(self, url: str) -> None:
        self.connection = await LeanConnection.open(url, self._on_message, "bench-lean-caller")
        await self.connection.ping(f"SUB {self._inbox}.> 1\r\nPING\r\n".encode())

    def _on_message(self, message: Msg) -> None:
        subject = message.subject
        if subject.endswith(".results"):
            call = self._calls.get(subject[:-8])
            if call is None:
                return
            if message.data:
                call.results.append(message.data)
            else:
                del self._calls[subject[:-8]]
                call.done.set_result(b"".join(call.results))
        elif message.reply:  # the handshake: end our (already complete) params stream
            assert self.connection is not None
            self.connection.write(pub_command(f"{message.reply}.params", b""))

    def call(self, subject: str, headers: dict[str, str], payload: bytes) -> asyncio.Future[bytes]:
        """Send one invocation; the future has the results (no coroutine, no task per call)."""
        assert self.connection is not None
        self._next += 1
        rx = f"{self._inbox}.{self._next}"
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls[rx] = _Call(done)
        self.connection.write(pub_command(subject, payload, rx, headers))
        return done

    def fail_pending(self, reason: str) -> int:
        """Fail every call still waiting (the run's watchdog); how many there were."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if not call.done.done():
                call.done.set_exception(TimeoutError(reason))
        return len(calls)


def answer_is_good(result: bytes, rows: int | None) -> bool:
    """`ok` (discriminant 0) and, for a query, a row list of the expected length (one LEB byte)."""
    if not result or result[0] != 0:
        return False
    return rows is None or (len(result) > 1 and result[1] == rows)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def run(caller: LeanWrpcCaller, command: dict[str, Any]) -> dict[str, Any]:
    subject = command["subject"]
    headers = command["headers"]
    payloads = [bytes.fromhex(p) for p in command["payloads"]]
    rows = command.get("rows")
    seconds = float(command["seconds"])
    latencies: list[float] = []
    errors = 0
    first_error = ""
    clock = time.perf_counter

    async def loop(worker: int) -> None:
        nonlocal errors, first_error
        i = worker
        while clock() < stop:
            started = clock()
            try:
                result = await caller.call(subject, headers, payloads[i % len(payloads)])
            except TimeoutError:
                errors += 1
                first_error = first_error or "no answer within 30 s of the window's end"
                continue
            latencies.append(clock() - started)
            if not answer_is_good(result, rows):
                errors += 1
                first_error = first_error or result[:200].hex()
            i += 1

    cpu_before = time.process_time()
    started = clock()
    stop = started + seconds
    # One watchdog for the whole run, not a timer per call: calls unanswered 30 s after the
    # window's end fail (and count as errors).
    watchdog = asyncio.get_running_loop().call_later(seconds + 30, caller.fail_pending, "no answer")
    await asyncio.gather(*(loop(w) for w in range(int(command["callers"]))))
    watchdog.cancel()
    elapsed = clock() - started
    latencies.sort()
    return {
        "calls": len(latencies),
        "errors": errors,
        "first_error": first_error,
        "seconds": elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "client_cpu_s": time.process_time() - cpu_before,
    }


async def serve(url: str) -> None:
    caller = LeanWrpcCaller()
    await caller.start(url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        result = await run(caller, json.loads(line))
        print(json.dumps(result), flush=True)


def main() -> int:
    url = os.environ["NATS_URL"]
    uvloop.run(serve(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
