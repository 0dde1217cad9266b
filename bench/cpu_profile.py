"""Where the provider's CPU goes: a CPU-time sampler inside the process (`setitimer(ITIMER_PROF)`).

`python -m bench.cpu_profile OUT.json` runs the provider (stdin HostData as usual) with a
sampler that SIGUSR1 starts and SIGUSR2 stops, writing the samples to OUT.json. ITIMER_PROF
counts the process's CPU time only, so a process waiting on a socket is never sampled — unlike
a wall-clock profiler, which on a busy 2-core machine blames whatever was running when the
scheduler took the core away. Time spent in C (asyncpg's protocol, uvloop) is charged to the
Python frame that called it. `summarise` groups samples by function and by layer.
"""

from __future__ import annotations

import collections
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

INTERVAL = 0.004  # seconds of CPU between samples (the kernel checks CPU timers each tick)

LAYERS = (  # first match along a sample's stack from its leaf wins
    ("nats-py", "/nats/"),
    ("asyncpg", "/asyncpg/"),
    ("prometheus-client", "/prometheus_client/"),
    ("opentelemetry", "/opentelemetry/"),
    ("observability", "provider/observability/"),
    ("wRPC codec", "provider/wit/codec.py"),
    ("wRPC framing", "provider/wrpc/framing.py"),
    ("wRPC server", "provider/wrpc/server.py"),
    ("pg values", "provider/postgres/values/convert.py"),
    ("pg values", "provider/postgres/values/text.py"),
    ("bounded fetch", "provider/postgres/bounded_fetch.py"),
    ("pool", "provider/postgres/pool.py"),
    ("pool", "provider/postgres/connections.py"),
    ("statements", "provider/postgres/statements.py"),
    ("service", "provider/postgres/service.py"),
    ("provider", "provider/"),
    ("asyncio", "/asyncio/"),
    ("uvloop", "/uvloop/"),
    ("logging", "/logging/"),
)


class Sampler:
    def __init__(self) -> None:
        self.leaf: collections.Counter[str] = collections.Counter()
        self.layer: collections.Counter[str] = collections.Counter()
        self.inclusive: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def _on_sample(self, signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        if frame is None:
            self.leaf["<no python frame>"] += 1
            return
        code = frame.f_code
        self.leaf[f"{code.co_filename}:{code.co_name}"] += 1
        seen: set[str] = set()
        layer = None
        walk: FrameType | None = frame
        while walk is not None:
            name = f"{walk.f_code.co_filename}:{walk.f_code.co_name}"
            if name not in seen:
                seen.add(name)
                self.inclusive[name] += 1
            if layer is None:
                filename = walk.f_code.co_filename
                for label, marker in LAYERS:
                    if marker in filename:
                        layer = label
                        break
            walk = walk.f_back
        self.layer[layer or "other"] += 1

    def start(self, *_: Any) -> None:
        signal.signal(signal.SIGPROF, self._on_sample)
        signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)

    def stop(self, path: Path) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        path.write_text(json.dumps({"samples": self.samples, "interval": INTERVAL,
                                    "leaf": self.leaf, "layer": self.layer,
                                    "inclusive": self.inclusive}))  # fmt: skip


def summarise(path: Path, calls: int, top: int = 25) -> str:
    data = json.loads(path.read_text())
    total = max(data["samples"], 1)
    us_per_sample = data["interval"] * 1e6
    lines = [f"{data['samples']} samples, {total * us_per_sample / max(calls, 1):.0f} µs "
             f"sampled CPU per call over {calls} calls", "by layer (leaf frame):"]  # fmt: skip
    for name, count in collections.Counter(data["layer"]).most_common():
        lines.append(f"  {count / total:6.1%}  {count * us_per_sample / max(calls, 1):6.1f} µs"
                     f"  {name}")  # fmt: skip
    lines.append("by function (self):")
    for name, count in collections.Counter(data["leaf"]).most_common(top):
        lines.append(f"  {count / total:6.1%}  {_short(name)}")
    lines.append("by function (inclusive):")
    for name, count in collections.Counter(data["inclusive"]).most_common(top):
        lines.append(f"  {count / total:6.1%}  {_short(name)}")
    return "\n".join(lines)


def _short(name: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in name:
            return name.split(marker, 1)[1]
    return name


def main() -> int:
    output = Path(sys.argv[1])
    sampler = Sampler()
    signal.signal(signal.SIGUSR1, sampler.start)
    signal.signal(signal.SIGUSR2, lambda *_: sampler.stop(output))
    from provider.__main__ import main as provider_main

    return provider_main([])


if __name__ == "__main__":
    sys.exit(main())
