"""A minimal NATS client for load generation: just enough protocol to play a host's wRPC calls.

The benchmark must measure the provider, not its caller. nats-py plus our wRPC client cost
about as much CPU per call as the provider itself, so the load generator speaks the NATS text
protocol directly: one subscription on its own inbox, pre-encoded invocations, one write per
batch of events read. The protocol is the provider's own sans-IO `nats_wire` (the provider's
data path speaks it too); `LeanConnection` is a bare asyncio shell around it. Plain loopback
NATS only: no TLS, no auth, no reconnect (a benchmark that loses its server has failed anyway).
"""

from __future__ import annotations

import asyncio
from typing import Any

from provider.nats import wire as nats_wire
from provider.nats.wire import Msg, NatsReader, Ping, Pong, ServerError


def connect_line(name: str) -> bytes:
    options = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
               "protocol": 1, "name": name, "lang": "python-lean", "version": "0"}  # fmt: skip
    return nats_wire.connect_command(options) + nats_wire.PING_COMMAND


class LeanConnection(asyncio.Protocol):
    """The I/O shell: feeds the parser, answers PING, hands messages to `on_message`."""

    def __init__(self, on_message: Any) -> None:
        self._parser = NatsReader()
        self._on_message = on_message
        self._transport: asyncio.Transport | None = None
        self._pong: asyncio.Future[None] | None = None
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
            if type(event) is Msg:
                self._on_message(event)
            elif type(event) is Ping:
                self.write(nats_wire.PONG_COMMAND)
            elif type(event) is Pong:
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            elif type(event) is ServerError:
                self.error = event.text

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pong is not None and not self._pong.done():
            self._pong.set_exception(ConnectionError(self.error or "connection lost"))

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    async def ping(self, before: bytes = nats_wire.PING_COMMAND) -> None:
        """Send `before` (ending in PING) and wait for the PONG: everything before is applied."""
        self._pong = asyncio.get_running_loop().create_future()
        self.write(before)
        await asyncio.wait_for(self._pong, 10)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
