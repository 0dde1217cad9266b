"""The README's demos run end to end (each starts its own NATS and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_module(module: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_make_demo_prints_the_rows_it_wrote() -> None:
    output = run_module("host_shim.provider_demo")
    assert "query-batch: created table orders" in output
    assert "exec: inserted 'fig' (1 row)" in output
    assert "query: 3 rows" in output
    rows = [
        line.split() for line in output.splitlines() if line.startswith("    ") and "--" not in line
    ]
    assert [row[:5] for row in rows[1:]] == [
        ["1", "apple", "3", "0.50", "1.50"],
        ["2", "pear", "1", "0.75", "0.75"],
        ["3", "fig", "12", "2.10", "25.20"],
    ]
    assert "invalid-query: ERROR 42P01" in output
    assert "shutdown: 'shutting down'" in output and "provider exited with 0" in output


def test_wire_demo_prints_the_decoded_result() -> None:
    output = run_module("host_shim.wire_demo")
    assert "params  : 0f 53 45 4c 45 43 54 20 24 31 3a 3a 74 65 78 74 01 58 02 68 69" in output
    assert "Case(tag='text', value='demo-component')" in output
