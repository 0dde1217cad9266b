"""A minimal NATS client for load generation: just enough protocol to play a host's wRPC calls.

The benchmark must measure the provider, not its caller. nats-py plus our wRPC client cost
about as much CPU per call as the provider itself, so the load generator speaks the NATS text
protocol directly: one subscription on its own inbox, pre-encoded invocations, one write per
batch of events read. `NatsParser` is sans-IO (bytes in, events out); `LeanConnection` is the
asyncio shell around it. Plain loopback NATS only: no TLS, no auth, no reconnect (a benchmark
that loses its server has failed anyway).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    subject: bytes
    reply: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class Info:
    fields: dict[str, Any]


class ProtocolError(Exception):
    pass


PING, PONG, OK = "PING", "PONG", "+OK"
Event = Message | Info | str  # str: PING, PONG, +OK, or "-ERR ..."


class NatsParser:
    """Server → client protocol: INFO, MSG, HMSG, PING, PONG, +OK, -ERR."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Event]:
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        position = 0
        end = len(buffer)
        while position < end:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            line = buffer[position:line_end]
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                parts = line.split(b" ")
                headed = parts[0] == b"HMSG"
                # MSG subject sid [reply] size / HMSG subject sid [reply] header-size total-size
                fixed = 5 if headed else 4
                if len(parts) not in (fixed, fixed + 1):
                    raise ProtocolError(f"bad message line {line!r}")
                reply = parts[3] if len(parts) == fixed + 1 else b""
                total = int(parts[-1])
                header_size = int(parts[-2]) if headed else 0
                body_start = line_end + 2
                body_end = body_start + total
                if body_end + 2 > end:
                    break  # the payload has not all arrived
                payload = buffer[body_start + header_size : body_end]
                events.append(Message(parts[1], reply, payload))
                position = body_end + 2
                continue
            if line == b"PING":
                events.append(PING)
            elif line == b"PONG":
                events.append(PONG)
            elif line == b"+OK":
                events.append(OK)
            elif line.startswith(b"INFO "):
                events.append(Info(json.loads(line[5:])))
            elif line.startswith(b"-ERR"):
                events.append(line.decode(errors="replace"))
            else:
                raise ProtocolError(f"unknown protocol line {line!r}")
            position = line_end + 2
        self._buffer = buffer[position:]
        return events


def connect_line(name: str) -> bytes:
    options = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
               "protocol": 1, "name": name, "lang": "python-lean", "version": "0"}  # fmt: skip
    return b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n"


def publish(subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes = b"") -> bytes:
    """One PUB/HPUB command; `headers` is a ready header block (`NATS/1.0\\r\\n...\\r\\n\\r\\n`)."""
    reply_part = b" " + reply if reply else b""
    if headers:
        sizes = b"%d %d" % (len(headers), len(headers) + len(payload))
        head = b"HPUB " + subject + reply_part + b" " + sizes + b"\r\n"
        return head + headers + payload + b"\r\n"
    return b"PUB " + subject + reply_part + b" %d\r\n" % len(payload) + payload + b"\r\n"


def header_block(headers: dict[str, str]) -> bytes:
    lines = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


class LeanConnection(asyncio.Protocol):
    """The I/O shell: feeds the parser, answers PING, hands messages to `on_message`."""

    def __init__(self, on_message: Any) -> None:
        self._parser = NatsParser()
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._pong: asyncio.Future[None] | None = None
        self.info: dict[str, Any] = {}
        self.error: str | None = None

    @classmethod
    async def open(cls, url: str, on_message: Any, name: str = "bench") -> LeanConnection:
        host, _, port = url.removeprefix("nats://").rpartition(":")
        loop = asyncio.get_running_loop()
        transport, connection = await loop.create_connection(
            lambda: cls(on_message), host, int(port)
        )
        connection._transport = transport  # uvloop may call connection_made a turn later
        await connection.ping(connect_line(name))
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if type(event) is Message:
                self._on_message(event)
            elif event == PING:
                self.write(b"PONG\r\n")
            elif event == PONG:
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            elif isinstance(event, Info):
                self.info = event.fields
            elif isinstance(event, str) and event.startswith("-ERR"):
                self.error = event

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pong is not None and not self._pong.done():
            self._pong.set_exception(ConnectionError(self.error or "connection lost"))

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    async def ping(self, before: bytes = b"PING\r\n") -> None:
        """Send `before` (ending in PING) and wait for the PONG: everything before is applied."""
        self._pong = asyncio.get_running_loop().create_future()
        self.write(before)
        await asyncio.wait_for(self._pong, 10)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
