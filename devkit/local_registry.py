"""A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8), on a free
loopback port with its storage in a temporary directory (never the system service)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from devkit.local_nats import free_port, stop_process


def registry_executable() -> str | None:
    """Debian's `docker-registry`, or None where it is not installed."""
    if shutil.which("docker-registry"):
        return shutil.which("docker-registry")
    return "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_registry() -> Iterator[str]:
    """Yield the registry's `host:port`; RuntimeError when it is missing or does not start."""
    executable = registry_executable()
    if executable is None:
        raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
    with tempfile.TemporaryDirectory(prefix="registry-") as workdir:
        address = f"127.0.0.1:{free_port()}"
        config = Path(workdir, "config.yml")
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir}/storage\n"
            f"http:\n  addr: {address}\n"
        )
        log_path = Path(workdir, "registry.log")
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [executable, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 15
            while not _answers(f"http://{address}"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {log_path.read_text()[-1000:]}"
                    )
                time.sleep(0.05)
            yield address
        finally:
            stop_process(process)
