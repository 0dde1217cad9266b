"""A wRPC client over NATS: calls WIT functions the way a wasmCloud host calls a provider.

One wildcard subscription on the client's own inbox prefix receives every call's handshake and
results; each call is `{inbox}.{n}`. The invocation carries as many params bytes as fit (the rest
follow on the server's `Rs.params`, always ended by an empty message), and the results are
collected from `rx.results` until their empty end message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provider.nats.live_subscriptions import subscriptions_live
from provider.wit.codec import Codec
from provider.wit.model import Function
from provider.wrpc.framing import (
    ByteStream,
    StreamTooLarge,
    chunks,
    first_chunk_room,
    invocation_subject,
    params_subject,
)


class WrpcError(Exception):
    """A call failed at the transport level (no WIT value came back)."""


class NoResponders(WrpcError):
    """Nobody serves this function (NATS status 503)."""


class CallTimeout(WrpcError):
    """The server did not answer in time."""


class EmptyResult(WrpcError):
    """The server ended the results stream without a value: it could not serve the call."""


@dataclass
class _Call:
    results: ByteStream
    handshake: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    results_done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


class WrpcClient:
    def __init__(
        self,
        nc: Any,
        prefix: str,
        *,
        codec: Codec | None = None,
        handshake_timeout: float = 10.0,
        result_timeout: float = 600.0,
        max_result_bytes: int = 64 * 1024 * 1024,
        no_responders_retries: tuple[float, ...] = (0.02, 0.1),
    ) -> None:
        self._nc = nc
        self.prefix = prefix
        self._codec = codec or Codec()
        self.handshake_timeout = handshake_timeout
        self.result_timeout = result_timeout
        self._max_result_bytes = max_result_bytes
        # NATS answers 503 only when no subscriber received the invocation, so retrying is
        # safe; right after a server subscribes, nats-server may still answer 503 for a
        # subject it recently found without interest (seen here about once in 300 tries).
        self._no_responders_retries = no_responders_retries
        self._inbox = ""
        self._subscription: Any = None
        self._numbers = itertools.count()
        self._calls: dict[str, _Call] = {}

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(
            f"{self._inbox}.>", cb=self._on_message, pending_bytes_limit=0
        )
        await subscriptions_live(self._nc)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def call(
        self,
        function: Function,
        args: Sequence[Any],
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        prefix: str | None = None,
    ) -> tuple[Any, ...]:
        """Call `function` with `args`; returns its decoded results. `prefix` sends this one
        call to another server than the client's own (a replica's own subjects)."""
        params = self._codec.encode_values(function.param_types, args)
        data = await self.invoke(
            function.instance, function.name, params, headers, timeout=timeout, prefix=prefix
        )
        if not data and function.results:
            raise EmptyResult(f"{function.instance}.{function.name}: no result (server failure)")
        return self._codec.decode_values(function.results, data)

    async def invoke(
        self,
        instance: str,
        function: str,
        params: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        prefix: str | None = None,
    ) -> bytes:
        """Send encoded params, return the encoded results (raw bytes)."""
        subject = invocation_subject(prefix or self.prefix, instance, function)
        for delay in self._no_responders_retries:
            try:
                return await self._invoke_once(subject, instance, function, params, headers,
                                               timeout)  # fmt: skip
            except NoResponders:
                await asyncio.sleep(delay)
        return await self._invoke_once(subject, instance, function, params, headers, timeout)

    async def _invoke_once(
        self,
        subject: str,
        instance: str,
        function: str,
        params: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> bytes:
        if self._subscription is None:
            raise RuntimeError("WrpcClient.start() was not called")
        reply_inbox = f"{self._inbox}.{next(self._numbers)}"
        call = _Call(ByteStream(self._max_result_bytes))
        self._calls[reply_inbox] = call
        try:
            room = first_chunk_room(self._nc.max_payload, reply_inbox, headers)
            await self._nc.publish(
                subject,
                params[:room],
                reply=reply_inbox,
                headers=dict(headers) if headers else None,
            )
            try:
                server_inbox = await asyncio.wait_for(call.handshake, self.handshake_timeout)
            except TimeoutError:
                raise CallTimeout(
                    f"{instance}.{function}: no handshake within {self.handshake_timeout:g} s"
                ) from None
            stream = params_subject(server_inbox)
            for chunk in chunks(params[room:], self._nc.max_payload):
                await self._nc.publish(stream, chunk)
            await self._nc.publish(stream, b"")
            wait = self.result_timeout if timeout is None else timeout
            try:
                await asyncio.wait_for(call.results_done.wait(), wait)
            except TimeoutError:
                raise CallTimeout(f"{instance}.{function}: no results within {wait:g} s") from None
            if call.error is not None:
                raise WrpcError(f"{instance}.{function}: {call.error}")
            return call.results.data()
        finally:
            del self._calls[reply_inbox]

    async def _on_message(self, msg: Any) -> None:
        subject: str = msg.subject
        if subject.endswith(".results"):
            call = self._calls.get(subject[: -len(".results")])
            if call is None:
                return
            try:
                if call.results.feed(msg.data):
                    call.results_done.set()
            except StreamTooLarge as exc:
                call.error = str(exc)
                call.results_done.set()
            return
        call = self._calls.get(subject)
        if call is None or call.handshake.done():
            return
        headers = msg.headers or {}
        if headers.get("Status") == "503":
            call.handshake.set_exception(NoResponders(f"no responders for {self.prefix}"))
        elif not msg.reply:
            call.handshake.set_exception(WrpcError("handshake without a reply subject"))
        else:
            call.handshake.set_result(msg.reply)
