"""The NATS client protocol, sans-IO: server bytes in, events out; client commands as bytes.

Just what the wRPC data path needs (`data_connection` is its I/O shell): INFO, MSG and HMSG
(with their header block parsed), PING, PONG, +OK, -ERR from the server; CONNECT, SUB, UNSUB,
PUB, HPUB and PING/PONG to it. Reference: https://docs.nats.io/reference/reference-protocols/nats-protocol
(and nats-py, which the rest of the provider uses and which this is tested against).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER_LINE = b"NATS/1.0"


class NatsProtocolError(Exception):
    """The server sent something this client cannot read: the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class Info:
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServerError:
    text: str  # what follows -ERR, without the quotes


@dataclass(slots=True)
class Msg:
    """One delivered message (the attributes nats-py's `Msg` has, for the same handlers)."""

    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None
    sid: int


class Ping:
    pass


class Pong:
    pass


class Ok:
    pass


PING, PONG, OK = Ping(), Pong(), Ok()
Event = Msg | Info | ServerError | Ping | Pong | Ok

# The longest control line accepted before its CRLF (a MSG line with long subjects is < 1 KiB).
MAX_CONTROL_LINE = 64 * 1024


def parse_headers(block: bytes) -> dict[str, str]:
    """A header block (`NATS/1.0[ status]`, then `Key: Value` lines) → {Key: Value}; the first
    value of a repeated key wins."""
    lines = block.split(b"\r\n")
    if not lines[0].startswith(HEADER_LINE):
        raise NatsProtocolError(f"header block without {HEADER_LINE!r}: {block[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, colon, value = line.partition(b":")
        if not colon:
            raise NatsProtocolError(f"malformed header line {line[:80]!r}")
        headers.setdefault(key.strip().decode(), value.strip().decode())
    return headers


class NatsReader:
    """Feed the server's bytes as they arrive; each call returns the complete events in them."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Event]:
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        position, end = 0, len(buffer)
        while position < end:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                if end - position > MAX_CONTROL_LINE:
                    raise NatsProtocolError("control line too long")
                break
            first = buffer[position]
            if first == 0x4D or first == 0x48:  # MSG / HMSG: the common case first
                message_end = _message(buffer, position, line_end, end, events)
                if message_end < 0:
                    break  # its payload has not all arrived
                position = message_end
                continue
            line = buffer[position:line_end]
            position = line_end + 2
            if line == b"PING":
                events.append(PING)
            elif line == b"PONG":
                events.append(PONG)
            elif line == b"+OK":
                events.append(OK)
            elif line.startswith(b"INFO "):
                events.append(Info(json.loads(line[5:])))
            elif line.startswith(b"-ERR"):
                events.append(ServerError(line[4:].strip().strip(b"'").decode(errors="replace")))
            else:
                raise NatsProtocolError(f"unknown protocol line {line[:80]!r}")
        self._buffer = buffer[position:]
        return events


def _message(buffer: bytes, position: int, line_end: int, end: int, events: list[Event]) -> int:
    """Parse the MSG/HMSG at `position`; the position after it, or -1 if incomplete."""
    parts = buffer[position:line_end].split()
    kind = parts[0]
    if kind == b"MSG" and len(parts) in (4, 5):
        header_size, total = 0, int(parts[-1])
    elif kind == b"HMSG" and len(parts) in (5, 6):
        header_size, total = int(parts[-2]), int(parts[-1])
    else:
        raise NatsProtocolError(f"malformed message line {buffer[position:line_end][:120]!r}")
    has_reply = len(parts) == (5 if kind == b"MSG" else 6)
    body_start = line_end + 2
    body_end = body_start + total
    if body_end + 2 > end:
        return -1
    if header_size > total or buffer[body_end : body_end + 2] != b"\r\n":
        raise NatsProtocolError("message body does not end where its size says")
    headers = parse_headers(buffer[body_start : body_start + header_size]) if header_size else None
    events.append(
        Msg(
            parts[1].decode(),
            parts[3].decode() if has_reply else "",
            buffer[body_start + header_size : body_end],
            headers,
            int(parts[2]),
        )
    )
    return body_end + 2


# --- client commands ------------------------------------------------------------------------------


def connect_command(options: Mapping[str, Any]) -> bytes:
    return b"CONNECT " + json.dumps(dict(options), separators=(",", ":")).encode() + b"\r\n"


def sub_command(subject: str, sid: int, queue: str = "") -> bytes:
    queue_part = f" {queue}" if queue else ""
    return f"SUB {subject}{queue_part} {sid}\r\n".encode()


def unsub_command(sid: int) -> bytes:
    return f"UNSUB {sid}\r\n".encode()


def header_block(headers: Mapping[str, str]) -> bytes:
    lines = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def pub_command(
    subject: str, payload: bytes, reply: str = "", headers: Mapping[str, str] | None = None
) -> bytes:
    """PUB (or HPUB with headers) of `payload`; subjects are checked by the caller."""
    reply_part = f" {reply}" if reply else ""
    if headers:
        block = header_block(headers)
        size = len(block) + len(payload)
        line = f"HPUB {subject}{reply_part} {len(block)} {size}\r\n".encode()
        return b"".join((line, block, payload, b"\r\n"))
    return b"".join((f"PUB {subject}{reply_part} {len(payload)}\r\n".encode(), payload, b"\r\n"))


PING_COMMAND = b"PING\r\n"
PONG_COMMAND = b"PONG\r\n"
