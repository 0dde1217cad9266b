"""A transaction-mode PgBouncer in front of a `PostgresServer`, for tests and benchmarks.

Debian's `pgbouncer` package (1.18 on Debian 12: no protocol-level prepared statements), run
as an unprivileged user on a free loopback port, with the configuration most guides give:
`pool_mode = transaction`, `ignore_startup_parameters = extra_float_digits` and a few server
connections, so that client connections really share them. Everything lives in a temporary
directory and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devkit.local_nats import free_port, tcp_answers
from devkit.local_postgres import PostgresServer, _run_as, _unprivileged_user

PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((path for path in PGBOUNCER_PATHS if Path(path).exists()), None)


@dataclass(frozen=True)
class Bouncer:
    """Where the bouncer listens; links reach the database through it."""

    host: str
    port: int
    server: PostgresServer
    log_path: Path

    def link_config(self, database: str) -> dict[str, str]:
        return {**self.server.link_config(database), "POSTGRES_HOST": self.host,
                "POSTGRES_PORT": str(self.port)}  # fmt: skip

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_pgbouncer(
    server: PostgresServer,
    *,
    pool_mode: str = "transaction",
    server_connections: int = 4,
    ignore_startup_parameters: str = "extra_float_digits",
) -> Iterator[Bouncer]:
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    if server.host.startswith("/"):
        raise RuntimeError("the bouncer needs a PostgreSQL server on TCP")
    run_as = _unprivileged_user()
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        users = workdir / "userlist.txt"
        users.write_text(f'"{server.user}" "{server.password}"\n')
        config = workdir / "pgbouncer.ini"
        log_path = workdir / "pgbouncer.log"
        config.write_text(
            "[databases]\n"
            f"* = host={server.host} port={server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
            f"unix_socket_dir = {workdir}\n"
            f"auth_type = scram-sha-256\nauth_file = {users}\n"
            f"admin_users = {server.user}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {server_connections}\nmin_pool_size = 0\n"
            "max_client_conn = 1000\nmax_db_connections = 0\n"
            f"ignore_startup_parameters = {ignore_startup_parameters}\n"
            f"logfile = {log_path}\npidfile = {workdir / 'pgbouncer.pid'}\n"
            "log_connections = 0\nlog_disconnections = 0\n"
        )
        if run_as is not None:
            for path in (workdir, users, config):
                shutil.chown(path, run_as, run_as)
        users.chmod(0o600)
        process = subprocess.Popen(
            [binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **_run_as(run_as),
        )
        deadline = time.monotonic() + 15
        while not tcp_answers(f"tcp://127.0.0.1:{port}", 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                log = log_path.read_text(errors="replace") if log_path.exists() else ""
                raise RuntimeError(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.05)
        yield Bouncer("127.0.0.1", port, server, log_path)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
