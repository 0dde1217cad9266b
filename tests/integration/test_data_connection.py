"""The wRPC data path's own NATS connection, against a real nats-server (and nats-py as the
peer): delivery with headers, queue groups, publishing with a reply, the server's max_payload,
flush() across a reconnect, and through a nats-server restart, a provider serving again with its
subscriptions re-sent.

A nats-py peer's subscription is confirmed with a message of its own (`confirmed_subscription`),
never with `peer.flush()` alone: nats-py writes flush's PING to the socket at once while the SUB
waits for its flusher task, so the PONG can come back before the server has the SUB, and a
message another connection publishes in between has no subscriber (it is dropped, as NATS does).
That was the "first subscription got nothing" flake (about 1 run in 25; server trace: the peer's
PING and PONG, then our PUB, then the peer's SUB)."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg as PeerMsg
from nats.aio.subscription import Subscription as PeerSubscription

from devkit.local_nats import free_port, nats_server_executable, stop_process, tcp_answers
from devkit.provider_harness import RunningProvider, linked_caller
from provider.nats.data_connection import MAX_PENDING_WHILE_DOWN, DataConnection
from provider.nats.wire import Msg
from provider.wit.values import Case, Ok
from provider.wrpc.client import WrpcClient
from tests.waiting import until


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


DEADLINE = 5.0  # seconds for anything that takes a few milliseconds when nothing is wrong


async def confirmed_subscription(peer: Client, prefix: str) -> PeerSubscription:
    """`peer.subscribe(f"{prefix}.>")`, returned once the server routes messages to it.

    `await peer.flush()` does not prove that (see the module's docstring). A message the peer
    publishes on its own connection after the SUB comes back only once the server has the SUB;
    anything published after that, from any connection, reaches the subscription."""
    subscription = await peer.subscribe(f"{prefix}.>")
    await peer.publish(f"{prefix}.ready", b"")
    try:
        probe = await subscription.next_msg(timeout=DEADLINE)
    except nats.errors.TimeoutError:
        raise AssertionError(
            f"the peer's own message on {prefix}.ready did not come back in {DEADLINE} s"
        ) from None
    assert probe.subject == f"{prefix}.ready"
    return subscription


async def received(
    subscription: PeerSubscription, what: str, context: Callable[[], str]
) -> PeerMsg:
    """The subscription's next message, or a failure that says which one went missing."""
    try:
        message: PeerMsg = await subscription.next_msg(timeout=DEADLINE)
    except nats.errors.TimeoutError:
        raise AssertionError(
            f"{what} never reached the peer in {DEADLINE} s; {context()}"
        ) from None
    return message


async def test_delivery_queue_groups_and_publish(restartable_nats: RestartableNats) -> None:
    delivered: list[Msg] = []
    data = await DataConnection.open(restartable_nats.url)
    peer = await nats.connect(restartable_nats.url)

    def context() -> str:
        return (f"peer stats {peer.stats}, data connection reconnects {data.reconnects}; "
                f"server log:\n{restartable_nats.log_tail()}")  # fmt: skip

    try:
        await data.subscribe("calls.>", queue="q", cb=delivered.append)
        inbox = data.new_inbox()
        await data.subscribe(f"{inbox}.>", cb=delivered.append)
        await data.flush()  # our SUBs and this PING go out in one write, in order
        assert data.max_payload == 1024 * 1024  # nats-server's default, from INFO

        await peer.publish("calls.one", b"payload", reply="reply.to", headers={"source-id": "c1"})
        await peer.publish(f"{inbox}.7.params", b"")
        await peer.flush()  # not proof that the server has both PUBs (nats-py): wait for them
        deadline = time.monotonic() + DEADLINE
        while len(delivered) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(delivered) == 2, f"delivered {delivered}; {context()}"
        first, second = delivered
        assert (first.subject, first.reply, first.data) == ("calls.one", "reply.to", b"payload")
        assert first.headers == {"source-id": "c1"}
        assert (second.subject, second.data, second.headers) == (f"{inbox}.7.params", b"", None)

        # Published once each, after the peer's subscription is confirmed: nothing may be lost.
        replies = await confirmed_subscription(peer, "answers")
        big = bytes(range(256)) * 1000
        await data.publish("answers.x", b"result", reply="back.here", headers={"k": "v é"})
        await data.publish("answers.big", big)
        await data.flush()  # both have reached the server (a PING answered after them)
        one = await received(replies, "the small PUB (answers.x)", context)
        assert (one.subject, one.data, one.reply) == ("answers.x", b"result", "back.here")
        assert one.headers == {"k": "v é"}
        two = await received(replies, "the 256000-byte PUB (answers.big)", context)
        assert (two.subject, len(two.data)) == ("answers.big", len(big))
        assert two.data == big
        with pytest.raises(ValueError):
            await data.publish("a subject with blanks", b"")
    finally:
        await peer.close()
        await data.close()


async def test_a_confirmed_subscription_survives_a_late_sub(
    restartable_nats: RestartableNats,
) -> None:
    """The flake's mechanism, made certain: the peer's flusher task writes its SUB 0.5 s late
    (nats-py writes flush's PING at once, so `subscribe(); flush()` returns before the server
    has the SUB and this message would be dropped). The confirmed subscription still gets it."""
    data = await DataConnection.open(restartable_nats.url)
    peer = await nats.connect(restartable_nats.url)
    transport: Any = peer._transport
    loop = asyncio.get_running_loop()
    send_lines = transport.writelines  # what nats-py's flusher task writes with (SUB, PUB)
    held: list[list[bytes]] = []

    def release() -> None:
        send_lines(held.pop(0))

    def late_lines(lines: list[bytes]) -> None:
        held.append([bytes(line) for line in lines])  # in order, after anything held before
        loop.call_later(0.5, release)

    transport.writelines = late_lines
    try:
        replies = await confirmed_subscription(peer, "late")
        await data.publish("late.answer", b"result")
        await data.flush()
        message = await received(replies, "late.answer", lambda: f"held writes {held}")
        assert message.data == b"result"
    finally:
        transport.writelines = send_lines
        await peer.close()
        await data.close()


async def test_a_flush_while_down_is_answered_by_its_own_ping(
    restartable_nats: RestartableNats,
) -> None:
    """A flush() issued while the server is away returns once the connection is back and the
    PING after what was held is answered: not on the reconnect handshake's PONG (which left the
    handshake waiting for its connect_timeout, with the held PUB and PING unsent)."""
    data = await DataConnection.open(restartable_nats.url)
    try:
        restartable_nats.stop()
        await until(lambda: not data.is_connected, "the data connection sees the stop", DEADLINE)
        await data.publish("held.while.down", b"m")
        flush = asyncio.create_task(data.flush(timeout=10))
        await asyncio.sleep(0.2)
        assert not flush.done(), "a flush returned while no server was there"
        restartable_nats.start()
        await flush
        assert data.is_connected, "flush() returned before the connection was back"
        assert data.reconnects == 1
        await asyncio.wait_for(data.flush(), 1)  # and the PONGs still pair with their PINGs
    finally:
        await data.close()


async def test_a_flush_that_cannot_be_held_fails_at_once(
    restartable_nats: RestartableNats,
) -> None:
    """While down, beyond MAX_PENDING_WHILE_DOWN a PING is dropped with the rest: flush() says
    so at once (it used to wait its whole timeout) and leaves no waiter behind that would take
    the reconnect handshake's PONG."""
    data = await DataConnection.open(restartable_nats.url)
    try:
        restartable_nats.stop()
        await until(lambda: not data.is_connected, "the data connection sees the stop", DEADLINE)
        chunk = bytes(1000 * 1000)
        for _ in range(MAX_PENDING_WHILE_DOWN // len(chunk) + 2):
            await data.publish("held.while.down", chunk)
        with pytest.raises(ConnectionError, match="down"):
            await data.flush(timeout=2)
        restartable_nats.start()
        # Back within a reconnect wait (it waited a connect_timeout for a PONG taken away).
        await until(lambda: data.is_connected, "the reconnect", seconds=4)
        await asyncio.wait_for(data.flush(), 2)
        assert data.reconnects == 1
    finally:
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

        async def connected_caller() -> tuple[Any, WrpcClient]:
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
