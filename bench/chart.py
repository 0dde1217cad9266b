"""The benchmark's PNG: CPU per call by workload and caller count, provider against the floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here: render straight to a file

import matplotlib.pyplot as plt


def draw(document: dict[str, Any], path: Path) -> None:
    rows = [row for row in document["rows"] if row.get("path") != "pooled"]  # no floor there
    labels = [f"{row['call']}\n{row['callers']}" for row in rows]
    positions = range(len(rows))
    width = 0.27
    figure, axes = plt.subplots(figsize=(max(8.0, len(rows) * 0.75), 4.8), dpi=110)
    axes.bar([p - width for p in positions], [r["floor_cpu_us"] for r in rows], width,
             label="floor: asyncpg prepared, uvloop", color="#6b8e23")  # fmt: skip
    if all("pool_cpu_us" in row for row in rows):
        axes.bar(list(positions), [r["pool_cpu_us"] for r in rows], width,
                 label="asyncpg.Pool", color="#b0b0b0")  # fmt: skip
    bars = axes.bar([p + width for p in positions], [r["provider_cpu_us"] for r in rows], width,
                    label="provider (wRPC over NATS)", color="#1f5fa8")  # fmt: skip
    for bar, row in zip(bars, rows, strict=True):
        axes.annotate(f"{row['cpu_ratio']:.1f}x", (bar.get_x() + bar.get_width() / 2,
                      bar.get_height()), ha="center", va="bottom", fontsize=7)  # fmt: skip
    axes.set_xticks(list(positions), labels, fontsize=7)
    axes.set_ylabel("CPU µs per call")
    axes.set_title(f"CPU per call (call, callers) — {document['machine']}", fontsize=8)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
