"""How one wRPC call is laid out in NATS messages (sans-IO: subjects, chunks, streams).

A call is: the invocation (first params chunk, reply-to `rx`), the server's empty handshake
(reply-to `Rs`), the remaining params chunks on `Rs.params` ended by an empty message, and the
result chunks on `rx.results` ended by an empty message. This module holds the names and the
bookkeeping of that exchange; the NATS I/O lives in `nats_server` and `nats_client`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from provider.wit.codec import Codec, DecodeError, Incomplete
from provider.wit.model import WitType

WRPC_VERSION = "0.0.1"
NATS_HEADER_LINE = b"NATS/1.0\r\n"


def invocation_subject(prefix: str, instance: str, function: str) -> str:
    """`{prefix}.wrpc.0.0.1.{instance}.{function}`; instance and function keep their dots. A
    world's root export has no instance: `{prefix}.wrpc.0.0.1.{function}`."""
    if not instance:
        return f"{prefix}.wrpc.{WRPC_VERSION}.{function}"
    return f"{prefix}.wrpc.{WRPC_VERSION}.{instance}.{function}"


def params_subject(server_inbox: str) -> str:
    return f"{server_inbox}.params"


def results_subject(reply_inbox: str) -> str:
    return f"{reply_inbox}.results"


def header_block_size(headers: Mapping[str, str] | None) -> int:
    """Bytes the NATS header block takes on the wire (counted against `max_payload`)."""
    if not headers:
        return 0
    size = len(NATS_HEADER_LINE) + 2  # status line, then the blank line that ends the block
    for key, value in headers.items():
        size += len(key.encode()) + 2 + len(value.encode()) + 2  # "key: value\r\n"
    return size


def first_chunk_room(max_payload: int, reply_inbox: str, headers: Mapping[str, str] | None) -> int:
    """How many params bytes fit in the invocation message itself (as wRPC's Rust client)."""
    return max(0, max_payload - len(reply_inbox) - header_block_size(headers))


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """`data` in consecutive slices of at most `size` bytes (none for empty data)."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


def message_chunks(parts: Sequence[bytes], size: int) -> Iterator[bytes]:
    """The concatenation of `parts` in slices of `size` bytes (the last may be shorter):
    the same messages as `chunks(b"".join(parts), size)`, without ever joining them all."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if len(parts) == 1 and len(parts[0]) <= size:
        if parts[0]:
            yield parts[0]  # the common case: one small payload, sent as it is
        return
    pending = bytearray()
    for part in parts:
        view = memoryview(part)
        while len(view):
            take = size - len(pending)
            if not pending and len(view) >= size:
                yield bytes(view[:size])
                view = view[size:]
                continue
            pending += view[:take]
            view = view[take:]
            if len(pending) == size:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


class StreamTooLarge(DecodeError):
    """A byte stream grew past its configured bound."""


class ByteStream:
    """Collects the payloads of one stream (params or results) until the empty end message."""

    __slots__ = ("_parts", "_size", "ended", "max_bytes")

    def __init__(self, max_bytes: int, initial: bytes = b"") -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes] = [initial] if initial else []
        self._size = len(initial)
        self.ended = False
        if self._size > max_bytes:
            raise StreamTooLarge(f"stream exceeds {max_bytes} bytes")

    def feed(self, payload: bytes) -> bool:
        """Add one message's payload; returns True once the stream has ended."""
        if self.ended:
            return True  # anything after the end is not part of this stream
        if not payload:
            self.ended = True
            return True
        self._size += len(payload)
        if self._size > self.max_bytes:
            raise StreamTooLarge(f"stream exceeds {self.max_bytes} bytes")
        self._parts.append(payload)
        return False

    @property
    def size(self) -> int:
        return self._size

    def data(self) -> bytes:
        if len(self._parts) == 1:
            return self._parts[0]
        return b"".join(self._parts)


def decode_first_payload(
    codec: Codec, types: Sequence[WitType], first_payload: bytes
) -> tuple[Any, ...] | None:
    """The call's values if the invocation's own payload already holds them all, else None.

    This is the fast path: most calls fit in one message, and the server can serve them without
    waiting for the params stream's end message. Malformed bytes raise `DecodeError`.
    """
    try:
        return codec.decode_values(types, first_payload, final=False)
    except Incomplete:
        return None
