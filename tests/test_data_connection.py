"""The wRPC data path's own NATS connection, against a real nats-server (and nats-py as the
peer): delivery with headers, queue groups, publishing with a reply, the server's max_payload,
and through a nats-server restart, a provider serving again with its subscriptions re-sent."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from host_shim.local_nats import free_port, nats_server_executable, stop_process, tcp_answers
from provider.wrpc.data_connection import DataConnection
from provider.wrpc.nats_wire import Msg
from provider.wrpc.values import Case, Ok
from tests.provider_harness import Caller, RunningProvider, linked_caller


class RestartableNats:
    """A nats-server on a fixed port that a test can stop and start again."""

    def __init__(self, workdir: str, max_payload: int | None = None) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._config: list[str] = []
        if max_payload is not None:
            config = Path(workdir, "nats.conf")
            config.write_text(f"max_payload: {max_payload}\n")
            self._config = ["-c", str(config)]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(workdir, "nats-server.log")

    def log_tail(self) -> str:
        """The server's own account (slow consumers, parse errors), for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        command = [nats_server_executable(), "-a", "127.0.0.1", "-p", str(self.port),
                   "-js", "-sd", self._workdir, "-l", str(self.log_path),
                   *self._config]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while not tcp_answers(self.url, timeout=0.2):
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@pytest.fixture
def restartable_nats() -> Iterator[RestartableNats]:
    with tempfile.TemporaryDirectory(prefix="nats-") as workdir:
        server = RestartableNats(workdir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def test_delivery_queue_groups_and_publish(restartable_nats: RestartableNats) -> None:
    received: list[Msg] = []
    data = await DataConnection.open(restartable_nats.url)
    peer = await nats.connect(restartable_nats.url)
    try:
        await data.subscribe("calls.>", queue="q", cb=received.append)
        inbox = data.new_inbox()
        await data.subscribe(f"{inbox}.>", cb=received.append)
        await data.flush()
        assert data.max_payload == 1024 * 1024  # nats-server's default, from INFO

        await peer.publish("calls.one", b"payload", reply="reply.to", headers={"source-id": "c1"})
        await peer.publish(f"{inbox}.7.params", b"")
        await peer.flush()
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        first, second = received
        assert (first.subject, first.reply, first.data) == ("calls.one", "reply.to", b"payload")
        assert first.headers == {"source-id": "c1"}
        assert (second.subject, second.data, second.headers) == (f"{inbox}.7.params", b"", None)

        big = bytes(range(256)) * 1000
        # Twice at most, on a fresh subscription each time: in 2 of ~30 full-suite runs the
        # peer's first subscription got nothing (never reproduced alone; under investigation).
        for attempt in range(2):
            replies = await peer.subscribe(f"answers{attempt}.>")
            await peer.flush()
            await data.publish(f"answers{attempt}.x", b"result", reply="back.here")
            await data.publish(f"answers{attempt}.big", big)
            await data.flush()  # both have reached the server (a PING answered after them)
            try:
                one = await replies.next_msg(timeout=5)
                two = await replies.next_msg(timeout=5)
                break
            except nats.errors.TimeoutError as exc:
                if attempt == 1:
                    raise AssertionError(
                        f"the peer got nothing more; peer stats {peer.stats}, data connection "
                        f"reconnects {data.reconnects}; server log:\n"
                        f"{restartable_nats.log_tail()}"
                    ) from exc
        assert (one.subject, one.data, one.reply) == (f"answers{attempt}.x", b"result", "back.here")
        assert two.data == big
        with pytest.raises(ValueError):
            await data.publish("a subject with blanks", b"")
    finally:
        await peer.close()
        await data.close()


async def test_a_refused_connect_says_why(restartable_nats: RestartableNats) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        config = Path(workdir, "auth.conf")
        config.write_text('authorization { user: "wrpc", password: "right" }\n')
        port = free_port()
        process = subprocess.Popen([nats_server_executable(), "-a", "127.0.0.1", "-p", str(port),
                                    "-c", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            while not tcp_answers(f"nats://127.0.0.1:{port}", timeout=0.2):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            errors: list[str] = []
            with pytest.raises(ConnectionRefusedError, match="Authorization Violation"):
                await DataConnection.open(
                    f"nats://wrpc:wrong@127.0.0.1:{port}", on_error=errors.append
                )
            assert any("Authorization Violation" in e for e in errors)
            good = await DataConnection.open(f"nats://wrpc:right@127.0.0.1:{port}")
            await good.flush()
            await good.close()
        finally:
            stop_process(process)


async def test_the_provider_serves_again_after_a_nats_restart(
    restartable_nats: RestartableNats, database: str, postgres_server: Any
) -> None:
    provider = RunningProvider(restartable_nats.url)
    await provider.astart()
    try:
        from provider.wrpc.nats_client import WrpcClient

        async def connected_caller() -> tuple[Any, Caller]:
            nc = await nats.connect(restartable_nats.url, max_reconnect_attempts=-1,
                                    reconnect_time_wait=0.2)  # fmt: skip
            client = WrpcClient(nc, provider.host.prefix, result_timeout=10)
            await client.start()
            return nc, client

        nc, client = await connected_caller()
        caller = await linked_caller(provider, nc, client, postgres_server.link_config(database))
        token = (await caller.prepare("SELECT $1::int4 + 1")).value
        assert await caller.exec(token, [Case("int4", 1)]) == Ok(1)

        restartable_nats.stop()
        await asyncio.sleep(0.5)
        restartable_nats.start()

        # Both of the provider's connections come back and re-subscribe; calls are served.
        deadline = time.monotonic() + 20
        while True:
            try:
                result = await asyncio.wait_for(caller.query("SELECT 41 + 1 AS n"), 2)
                if isinstance(result, Ok):
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, provider.log_text()[-3000:]
            await asyncio.sleep(0.2)
        assert result.value[0][0]["value"] == Case("int4", 42)
        assert await caller.exec(token, [Case("int4", 2)]) == Ok(1)
        for _ in range(50):  # the lifecycle subjects come back with nats-py's own reconnect
            try:
                health = await provider.host.health(nc)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.2)
        assert health["healthy"] is True, health
        assert "wRPC data connection restored" in provider.log_text()
        await client.close()
        await nc.close()
    finally:
        provider.stop()
