"""The wRPC data path's own NATS connection: invocations in, handshakes and results out.

nats-py costs about 60-90 µs of CPU per wRPC call here (a `Msg` object, a header parse and a
queue hand-off per message, a task per subscription, a flusher task, a coroutine per publish);
the calls themselves need far less. This connection carries only the wRPC subjects (function
invocations and the server's params inbox); nats-py keeps the lifecycle subjects and JetStream.
It does what those subjects need of a NATS client, as nats-py does it: the host's user JWT and
seed (the server's nonce signed), user/password or token from the URL, TLS (when the URL says
`tls://` or the server requires it), the server's `max_payload`, PING/PONG both ways (a silent
server is dropped after two unanswered PINGs), reconnect forever with the subscriptions
re-sent, and writes held while the socket's buffer is full. Messages are handed to synchronous
callbacks straight from the read (no task, no queue), and everything written in one turn of
the event loop goes out in one write. The protocol itself is `nats_wire` (sans-IO).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import nkeys  # type: ignore[import-untyped]

from provider.nats import wire as nats_wire
from provider.nats.wire import Info, Msg, NatsReader, Ping, Pong, ServerError

log = logging.getLogger(__name__)

MessageCallback = Callable[[Msg], None]
ErrorCallback = Callable[[str], None]

# Seconds between our PINGs; two unanswered ones drop the connection, so a server gone silent
# (packets dropped, no reset) is noticed within 3 x PING_INTERVAL = 12 s, not TCP's minutes.
PING_INTERVAL = 4.0
MAX_OUTSTANDING_PINGS = 2
RECONNECT_WAITS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
# What may wait to be written while the connection is down; beyond it, new writes are dropped
# (their calls were answered into a dead connection; the host's own timeout covers them).
MAX_PENDING_WHILE_DOWN = 8 * 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    user_jwt: str = ""
    user_seed: str = ""


@dataclass
class Subscription:
    connection: DataConnection
    sid: int
    subject: str
    queue: str
    callback: MessageCallback

    async def unsubscribe(self) -> None:
        self.connection._unsubscribe(self)

    async def drain(self) -> None:
        """Unsubscribe, then keep serving what the server sent before it saw the UNSUB."""
        self.connection._write(nats_wire.unsub_command(self.sid))
        with contextlib.suppress(Exception):
            await self.connection.flush()
        self.connection._subscriptions.pop(self.sid, None)


@dataclass
class _Settings:
    url: str
    credentials: Credentials
    tls: ssl.SSLContext | None
    name: str
    connect_timeout: float
    on_error: ErrorCallback | None
    ping_interval: float = PING_INTERVAL
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


class DataConnection(asyncio.Protocol):
    """A NATS client for the wRPC server (`WrpcServer` uses it like a nats-py client)."""

    sync_callbacks = True  # subscribe() takes plain functions, called from the read

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._reader = NatsReader()
        self._transport: asyncio.Transport | None = None
        self._subscriptions: dict[int, Subscription] = {}
        self._next_sid = 0
        self._pending = bytearray()
        self._flush_scheduled = False
        # One entry per PING, in order: a future to complete (connect, flush) or None (a
        # keep-alive PING), so a PONG always answers the PING it belongs to. `_pongs` holds the
        # PINGs written to the current socket (a PONG completes its first entry);
        # `_queued_pongs` those still in `_pending` (written while the connection was down, or
        # not yet sent this turn), which join `_pongs` when `_pending` is written. A PING that
        # has not reached a socket never takes a PONG meant for another (the handshake's, after
        # a reconnect), and one lost with a socket never leaves an entry that shifts the rest.
        self._pongs: deque[asyncio.Future[None] | None] = deque()
        self._queued_pongs: list[asyncio.Future[None] | None] = []
        self._info: asyncio.Future[dict[str, Any]] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._connected = False
        self._closing = False
        self._outstanding_pings = 0
        self._reconnect_task: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._inbox_prefix = f"_INBOX.{secrets.token_hex(11)}"
        self._loop = asyncio.get_running_loop()
        self.max_payload = 1024 * 1024
        self.reconnects = 0

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        credentials: Credentials | None = None,
        tls: ssl.SSLContext | None = None,
        name: str = "wrpc data path",
        connect_timeout: float = 5.0,
        on_error: ErrorCallback | None = None,
        ping_interval: float = PING_INTERVAL,
    ) -> DataConnection:
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        settings = _Settings(url, credentials or Credentials(), tls, name, connect_timeout,
                             on_error, ping_interval)  # fmt: skip
        if parts.username and parts.password is not None:
            settings.user, settings.password = unquote(parts.username), unquote(parts.password)
        elif parts.username:
            settings.token = unquote(parts.username)
        connection = cls(settings)
        await connection._connect()
        connection._ping_task = asyncio.create_task(connection._keep_alive())
        return connection

    async def _connect(self) -> None:
        """One attempt: TCP, INFO, TLS if asked for, CONNECT, PING → PONG (or the -ERR)."""
        settings = self._settings
        parts = urlsplit(settings.url if "://" in settings.url else f"nats://{settings.url}")
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        self._reader = NatsReader()
        self._info = self._loop.create_future()
        # A new socket: no PING is in flight on it (what a dead one had was failed with it).
        self._fail_waiters(self._pongs, ConnectionError("connection replaced"))
        try:
            await self._handshake(host, port, parts.scheme)
        except BaseException:
            if self._transport is not None:  # a failed attempt leaves no socket behind
                self._transport.abort()
                self._transport = None
            raise
        self._connected = True
        self._outstanding_pings = 0
        self._resubscribe()
        self._schedule_flush()

    async def _handshake(self, host: str, port: int, scheme: str) -> None:
        settings = self._settings
        assert self._info is not None
        async with asyncio.timeout(settings.connect_timeout):
            transport, _ = await self._loop.create_connection(lambda: self, host, port)
            self._transport = transport
            info = await self._info
            if scheme == "tls" or info.get("tls_required"):
                context = settings.tls or ssl.create_default_context()
                upgraded = await self._loop.start_tls(
                    transport, self, context, server_hostname=host
                )
                if upgraded is None:
                    raise ConnectionError("TLS upgrade failed")
                self._transport = upgraded
            self.max_payload = int(info.get("max_payload", self.max_payload))
            pong = self._loop.create_future()
            self._pongs.append(pong)
            assert self._transport is not None
            self._transport.write(nats_wire.connect_command(self._connect_options(info))
                                  + nats_wire.PING_COMMAND)  # fmt: skip
            await pong

    def _connect_options(self, info: dict[str, Any]) -> dict[str, Any]:
        settings = self._settings
        options: dict[str, Any] = {
            "verbose": False, "pedantic": False, "lang": "python-wrpc", "version": "1",
            "protocol": 1, "headers": True, "no_responders": True, "name": settings.name,
        }  # fmt: skip
        if settings.tls is not None or info.get("tls_required"):
            options["tls_required"] = True
        credentials = settings.credentials
        if credentials.user_jwt and credentials.user_seed:
            options["jwt"] = credentials.user_jwt
            if "nonce" in info:
                signer = nkeys.from_seed(credentials.user_seed.encode())
                signature = signer.sign(info["nonce"].encode())
                options["sig"] = base64.urlsafe_b64encode(signature).decode().rstrip("=")
        elif settings.user is not None:
            options["user"], options["pass"] = settings.user, settings.password
        elif settings.token is not None:
            options["auth_token"] = settings.token
        return options

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            events = self._reader.feed(data)
        except nats_wire.NatsProtocolError as exc:
            log.warning("dropping the wRPC data connection", extra={"error": str(exc)})
            if self._transport is not None:
                self._transport.close()
            return
        subscriptions = self._subscriptions
        for event in events:
            if type(event) is Msg:
                subscription = subscriptions.get(event.sid)
                if subscription is not None:
                    try:
                        subscription.callback(event)
                    except Exception:  # a handler bug must not take the connection down
                        log.exception("wRPC message handler failed")
            elif type(event) is Ping:
                self._write(nats_wire.PONG_COMMAND)
            elif type(event) is Pong:
                self._outstanding_pings = 0
                if self._pongs:
                    pong = self._pongs.popleft()
                    if pong is not None and not pong.done():
                        pong.set_result(None)
            elif type(event) is Info:
                if self._info is not None and not self._info.done():
                    self._info.set_result(event.fields)
                elif "max_payload" in event.fields:
                    self.max_payload = int(event.fields["max_payload"])
            elif type(event) is ServerError:
                self._on_server_error(event.text)

    def _on_server_error(self, text: str) -> None:
        if self._settings.on_error is not None:
            self._settings.on_error(text)
        if not self._connected:  # the CONNECT was refused: fail the attempt with why
            self._fail_waiters(self._pongs, ConnectionRefusedError(text))

    @staticmethod
    def _fail_waiters(
        waiters: deque[asyncio.Future[None] | None] | list[asyncio.Future[None] | None],
        error: Exception,
    ) -> None:
        for waiter in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        waiters.clear()

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        was_connected, self._connected = self._connected, False
        self._transport = None
        error = ConnectionError(f"connection lost: {exc}" if exc else "connection closed")
        # The PINGs written to this socket are gone with it; those still queued in `_pending`
        # go out after the reconnect (and are answered then), unless the connection is closing.
        self._fail_waiters(self._pongs, error)
        if self._closing:
            self._fail_waiters(self._queued_pongs, error)
        for future in (self._info, self._writable):
            if future is not None and not future.done():
                future.set_exception(error)
        if was_connected and not self._closing:
            log.warning("wRPC data connection lost: reconnecting")
            self._reconnect_task = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RECONNECT_WAITS[min(attempt, len(RECONNECT_WAITS) - 1)])
            attempt += 1
            try:
                await self._connect()
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
                if self._transport is not None:
                    self._transport.abort()
                    self._transport = None
                if attempt == 1 or attempt % 30 == 0:
                    log.info("wRPC data connection: reconnect failed", extra={"error": str(exc)})
                continue
            self.reconnects += 1
            log.info("wRPC data connection restored")
            return

    async def _keep_alive(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._settings.ping_interval)
            if not self._connected or self._transport is None:
                continue
            if self._outstanding_pings >= MAX_OUTSTANDING_PINGS:
                log.warning("wRPC data connection: the server stopped answering PINGs")
                self._transport.abort()  # connection_lost reconnects
                continue
            self._outstanding_pings += 1
            self._write_ping(None)

    # --- what WrpcServer uses (nats-py's names) -----------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    def new_inbox(self) -> str:
        return f"{self._inbox_prefix}.{secrets.token_hex(6)}"

    async def subscribe(
        self, subject: str, queue: str = "", cb: MessageCallback | None = None, **_: Any
    ) -> Subscription:
        if cb is None:
            raise ValueError("the data connection delivers to callbacks only")
        self._next_sid += 1
        subscription = Subscription(self, self._next_sid, subject, queue, cb)
        self._subscriptions[subscription.sid] = subscription
        self._write(nats_wire.sub_command(subject, subscription.sid, queue))
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if self._subscriptions.pop(subscription.sid, None) is not None:
            self._write(nats_wire.unsub_command(subscription.sid))

    def _resubscribe(self) -> None:
        commands = [nats_wire.sub_command(s.subject, s.sid, s.queue)
                    for s in self._subscriptions.values()]  # fmt: skip
        if commands:  # ahead of anything held while down
            self._pending[:0] = b"".join(commands)

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: Any = None
    ) -> None:
        # Subjects here are the host's reply inboxes (read from a MSG line, so without blanks)
        # and ours; a blank would break the protocol line, so it is refused.
        if " " in subject or " " in reply:
            raise ValueError(f"invalid subject {subject!r}")
        self._write(nats_wire.pub_command(subject, payload, reply, headers))
        if self._writable is not None and not self._writable.done():
            await self._writable  # the socket's buffer is full: wait until it drains

    async def flush(self, timeout: float = 5.0) -> None:
        """Everything written so far has reached the server (a PING after it answered).

        While the connection is down this waits (up to `timeout`) for the reconnect and the
        answer to this PING; if the bytes held meanwhile are over the limit, the PING cannot be
        held and this fails at once with ConnectionError."""
        pong: asyncio.Future[None] = self._loop.create_future()
        if not self._write_ping(pong):
            raise ConnectionError(
                "the wRPC data connection is down and holds too much to take a PING"
            )
        await asyncio.wait_for(pong, timeout)

    async def close(self) -> None:
        self._closing = True
        for task in (self._ping_task, self._reconnect_task):
            if task is not None:
                task.cancel()
        if self._transport is not None:
            self._flush_now()
            self._transport.close()  # connection_lost fails the PINGs still unanswered
        else:
            self._fail_waiters(self._queued_pongs, ConnectionError("connection closed"))
        self._connected = False

    # --- writing: one write per turn of the loop ----------------------------------------------

    def _write(self, data: bytes) -> bool:
        """Queue `data` for this turn's write; False if it was dropped (down, too much held)."""
        if not self._connected and len(self._pending) > MAX_PENDING_WHILE_DOWN:
            return False
        self._pending += data
        self._schedule_flush()
        return True

    def _write_ping(self, waiter: asyncio.Future[None] | None) -> bool:
        """Queue a PING whose PONG completes `waiter` (None: a keep-alive PING)."""
        if not self._write(nats_wire.PING_COMMAND):
            return False
        self._queued_pongs.append(waiter)
        return True

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._pending:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        if self._pending and self._connected and self._transport is not None:
            self._transport.write(bytes(self._pending))
            self._pending.clear()
            if self._queued_pongs:  # their PINGs are on this socket now, after the earlier ones
                self._pongs.extend(self._queued_pongs)
                self._queued_pongs.clear()
