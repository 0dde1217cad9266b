"""A wRPC server over NATS: serves exported WIT functions to wasmCloud hosts.

One queue subscription per exported function subject (queue group = prefix, so replicas share
the load) and one wildcard subscription on the server's own inbox prefix that routes every
call's params stream; no subscription is created per call. Each call runs in its own task.
Every call gets an answer: the handler's results, or, when it cannot be served (malformed or
missing params, a crashing handler, shutdown), the export's failure result, so a calling
component is never left waiting for the host's ten-minute execution timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from provider.common.slots import Slots
from provider.nats.live_subscriptions import subscriptions_live
from provider.wit.codec import Codec, CodecError, Incomplete
from provider.wit.model import Function
from provider.wrpc.framing import (
    decode_first_payload,
    invocation_subject,
    message_chunks,
    results_subject,
)
from provider.wrpc.params import ParamsReception, list_over_bound

log = logging.getLogger(__name__)

# A first payload larger than this has its list counts read before it is decoded whole.
PEEK_BEFORE_DECODING = 64 * 1024
# Parameters this large are decoded in steps, between turns of the event loop, so that one
# component's large call does not stall every other component's calls.
DECODE_IN_STEPS_BYTES = 256 * 1024


@dataclass(slots=True)
class CallContext:
    """What a handler knows about the call besides its parameters (read-only by convention:
    not frozen, whose __init__ costs a microsecond a call)."""

    instance: str
    function: str
    headers: Mapping[str, str]

    @property
    def source_id(self) -> str | None:
        return self.headers.get("source-id")

    @property
    def link_name(self) -> str:
        return self.headers.get("link-name", "default")


Handler = Callable[[CallContext, tuple[Any, ...]], Awaitable[tuple[Any, ...]]]


class CallObserver(Protocol):
    """Sees each call's handler run: `start` before it, `end` after, with its results or
    the exception it raised (a tracer's SERVER span)."""

    def start(self, instance: str, function: str, headers: Mapping[str, str]) -> Any: ...

    def end(
        self, handle: Any, results: tuple[Any, ...] | None, error: BaseException | None
    ) -> None: ...


FailureResult = Callable[[str], tuple[Any, ...]]


@dataclass(frozen=True)
class Export:
    function: Function
    handler: Handler
    # Results to send when the call cannot be served (e.g. `(Err(Case("unexpected", msg)),)`);
    # without it only the end-of-stream is sent, which makes the calling component trap.
    failure_result: FailureResult | None = None
    # A bound on the element count of every top-level list parameter, checked as soon as the
    # count has arrived (before the rest is read), and the results that refuse such a call.
    max_list_items: int | None = None
    refuse_params: FailureResult | None = None


@dataclass(slots=True)
class _Call:
    reply_inbox: str  # the caller's `rx`
    call_inbox: str  # our `Rs` for this call
    handshake_sent: bool = False
    answered: bool = False


@dataclass
class _PendingParams:
    """A call waiting for its params stream: what has arrived, and the event its task awaits."""

    reception: ParamsReception
    done: asyncio.Event = field(default_factory=asyncio.Event)


class WrpcServer:
    def __init__(
        self,
        nc: Any,
        prefix: str,
        *,
        codec: Codec | None = None,
        params_timeout: float = 30.0,
        max_params_bytes: int = 16 * 1024 * 1024,
        max_concurrent_calls: int = 1024,
    ) -> None:
        self._nc = nc
        self.prefix = prefix
        self._codec = codec or Codec()
        self._params_timeout = params_timeout
        self._max_params_bytes = max_params_bytes
        self._exports: dict[str, Export] = {}
        self._subscriptions: list[Any] = []
        self._inbox_subscription: Any = None
        self._inbox = ""
        self._call_numbers = itertools.count()
        self._pending_params: dict[str, _PendingParams] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls past this many wait (handshaken, answered in turn) rather than all running.
        self._handler_slots = Slots(max_concurrent_calls)
        self.accepting = False
        # Sees each call's handler run (tracing); None costs nothing.
        self.observer: CallObserver | None = None

    def export(
        self,
        function: Function,
        handler: Handler,
        failure_result: FailureResult | None = None,
        *,
        max_list_items: int | None = None,
        refuse_params: FailureResult | None = None,
    ) -> None:
        self.add(Export(function, handler, failure_result, max_list_items, refuse_params))

    def add(self, export: Export) -> None:
        function = export.function
        self._exports[invocation_subject(self.prefix, function.instance, function.name)] = export

    @property
    def in_flight(self) -> int:
        """Calls being served right now."""
        return len(self._tasks)

    @property
    def awaiting_params(self) -> int:
        """Calls still waiting for the rest of their parameters."""
        return len(self._pending_params)

    def subjects(self) -> list[str]:
        """What this server subscribes to: every export and its params inbox."""
        return [*self._exports, f"{self._inbox}.>"]

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._inbox_subscription = await self._nc.subscribe(
            f"{self._inbox}.>", cb=self._callback(self._on_inbox_message), pending_bytes_limit=0
        )
        for subject in self._exports:
            self._subscriptions.append(
                await self._nc.subscribe(
                    subject, queue=self.prefix, cb=self._callback(self._on_invocation)
                )
            )
        await subscriptions_live(self._nc)  # live at the server once start() returns
        self.accepting = True
        log.debug(
            "wrpc server listening", extra={"prefix": self.prefix, "functions": len(self._exports)}
        )

    async def stop_accepting(self, timeout: float = 0.05) -> None:
        """Stop taking new calls; calls already received go on, queued ones are refused."""
        self.accepting = False
        subscriptions, self._subscriptions = self._subscriptions, []
        # drain, not unsubscribe: nats-py would drop what is queued, and those callers would
        # wait out their timeout; drained messages reach `_on_invocation`, which refuses them.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(s.drain() for s in subscriptions), return_exceptions=True),
                timeout,
            )

    async def stop(self, grace: float = 0.1) -> None:
        """Stop taking calls, give in-flight calls `grace` seconds, then fail the rest."""
        await self.stop_accepting()
        if self._tasks:
            _, still_running = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in still_running:
                task.cancel()  # the call task answers with its failure result on cancellation
            if still_running:
                await asyncio.wait(still_running, timeout=0.05)
        if self._inbox_subscription is not None:
            with contextlib.suppress(Exception):
                await self._inbox_subscription.unsubscribe()
            self._inbox_subscription = None

    # -- NATS callbacks: route only, never block (nats-py runs one subscription's callbacks
    #    one at a time; the data connection calls them straight from its read) --

    def _callback(self, route: Callable[[Any], None]) -> Any:
        """`route` as the connection takes callbacks: as it is (the data connection) or as
        a coroutine function (nats-py)."""
        if getattr(self._nc, "sync_callbacks", False):
            return route

        async def callback(msg: Any) -> None:
            route(msg)

        return callback

    def _on_invocation(self, msg: Any) -> None:
        export = self._exports.get(msg.subject)
        if export is None or not msg.reply:
            log.warning("dropping invocation without reply subject", extra={"subject": msg.subject})
            return
        if not self.accepting:
            # Queued before the stop: answer it, or its caller waits out its whole timeout.
            task = asyncio.create_task(self._refuse(export, msg))
        else:
            task = asyncio.create_task(self._serve(export, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, export: Export, msg: Any) -> None:
        call = _Call(msg.reply, f"{self._inbox}.{next(self._call_numbers)}")
        with contextlib.suppress(Exception):
            await self._fail(export, call, "the provider is shutting down")

    def _on_inbox_message(self, msg: Any) -> None:
        # Subjects look like `{inbox}.{call}.params`; anything else is not ours to take.
        call_inbox, _, path = msg.subject.rpartition(".")
        if path != "params":
            return
        pending = self._pending_params.get(call_inbox)
        if pending is None or pending.done.is_set():
            return  # a call already served from its first payload, or one given up on
        if pending.reception.feed(msg.data):
            pending.done.set()

    # -- one call --

    async def _serve(self, export: Export, msg: Any) -> None:
        function = export.function
        call = _Call(msg.reply, f"{self._inbox}.{next(self._call_numbers)}")
        started = time.perf_counter() if log.isEnabledFor(logging.DEBUG) else 0.0
        try:
            params = _complete_first_payload(self._codec, export, msg.data)
            if params is not None:
                await self._handshake(call)  # all there: no params stream to wait for
            else:
                params = await self._receive_params(export, msg, call)
                if params is None:
                    return  # answered already (malformed or incomplete parameters)
            context = CallContext(function.instance, function.name, msg.headers or {})
            try:
                slots = self._handler_slots
                if not slots.try_take():
                    await slots.take()
                observer = self.observer
                if observer is None:
                    try:
                        results = await export.handler(context, params)
                    finally:
                        slots.give()
                else:
                    results = await self._observed(observer, export, context, params)
                # Parts: rows encoded batch by batch (an EncodedList) go out without a join.
                payload = self._codec.encode_values_parts(function.results, results)
            except CodecError as exc:
                log.error(
                    "handler returned a value its WIT type rejects", extra=_call(function, exc)
                )
                await self._fail(export, call, f"internal error: {exc}")
                return
            except Exception as exc:  # a handler bug must still answer the call
                log.exception("handler failed", extra=_call(function, exc))
                await self._fail(export, call, f"internal error: {type(exc).__name__}")
                return
            await self._send_results(call, payload)
        except asyncio.CancelledError:
            # Shutdown: whatever stage the call was at, it gets an answer before we go.
            if not call.answered:
                with contextlib.suppress(Exception):
                    await self._fail(export, call, "the provider is shutting down")
            raise
        except Exception:  # NATS gone: nothing left to answer with
            log.exception("cannot answer call", extra={"function": function.name})
        finally:
            self._pending_params.pop(call.call_inbox, None)
            if started:
                elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
                log.debug("call served", extra={"function": function.name, "ms": elapsed_ms})

    async def _observed(
        self, observer: CallObserver, export: Export, context: CallContext, params: Any
    ) -> tuple[Any, ...]:
        """The handler inside the observer's start/end (a slot is held, given back here)."""
        try:
            handle = observer.start(context.instance, context.function, context.headers)
            try:
                results = await export.handler(context, params)
            except BaseException as exc:
                observer.end(handle, None, exc)
                raise
        finally:
            self._handler_slots.give()  # whatever the observer or the handler raised
        observer.end(handle, results, None)
        return results

    async def _receive_params(
        self, export: Export, msg: Any, call: _Call
    ) -> tuple[Any, ...] | None:
        """Handshake, then the decoded params; on failure, answers the call and returns None."""
        function = export.function
        reception = ParamsReception(
            self._codec, function, self._max_params_bytes, export.max_list_items
        )
        # Registered before the handshake goes out, so no params chunk can slip past; the
        # invocation's own payload is the stream's first part.
        pending = _PendingParams(reception)
        self._pending_params[call.call_inbox] = pending
        if reception.feed_first(msg.data):
            pending.done.set()
        elif len(msg.data) > PEEK_BEFORE_DECODING:
            reception.check_list_lengths()  # a large first payload: count before decoding
        await self._handshake(call)
        try:
            if not reception.settled or reception.complete:
                params = await self._decode_first(function, msg.data)
                if params is not None:
                    refusal = reception.over_bound(params)
                    if refusal is None:
                        return params
                    reception.refused = refusal
                else:
                    reception.check_list_lengths()
            if not reception.settled:
                try:
                    await asyncio.wait_for(pending.done.wait(), self._params_timeout)
                except TimeoutError:
                    await self._fail(
                        export,
                        call,
                        f"parameters incomplete after {self._params_timeout:g} s "
                        f"({reception.size} bytes received, no end of stream)",
                    )
                    return None
            if reception.refused is not None:
                await self._refuse_params(export, call, reception.refused)
                return None
            if reception.malformed is not None:
                await self._fail(export, call, f"malformed parameters: {reception.malformed}")
                return None
            data = reception.data()
            if len(data) > DECODE_IN_STEPS_BYTES:
                return await self._decode_in_steps(function, data)
            return self._codec.decode_values(function.param_types, data)
        except CodecError as exc:
            log.warning("malformed parameters", extra=_call(function, exc))
            await self._fail(export, call, f"malformed parameters: {exc}")
            return None

    async def _decode_first(self, function: Function, payload: bytes) -> tuple[Any, ...] | None:
        """The parameters, if the invocation's own payload holds them all (None: the rest
        comes on the params stream)."""
        if len(payload) > DECODE_IN_STEPS_BYTES:
            try:
                return await self._decode_in_steps(function, payload, final=False)
            except Incomplete:
                return None
        return decode_first_payload(self._codec, function.param_types, payload)

    async def _decode_in_steps(
        self, function: Function, data: bytes, final: bool = True
    ) -> tuple[Any, ...]:
        """Large parameters decoded a few thousand list items at a time, with a turn of the
        event loop between steps: one component's 16 MiB call never stalls the others."""
        steps = self._codec.decode_values_in_steps(function.param_types, data, final=final)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                decoded: tuple[Any, ...] = done.value
                return decoded
            await asyncio.sleep(0)

    async def _handshake(self, call: _Call) -> None:
        if not call.handshake_sent:
            call.handshake_sent = True
            await self._nc.publish(call.reply_inbox, b"", reply=call.call_inbox)

    async def _send_results(self, call: _Call, payload: bytes | list[bytes]) -> None:
        call.answered = True
        subject = results_subject(call.reply_inbox)
        cancelled = False
        parts = [payload] if isinstance(payload, bytes) else payload
        large = sum(map(len, parts)) > self._nc.max_payload
        # Built one message at a time: a large result is never copied whole.
        for message in itertools.chain(message_chunks(parts, self._nc.max_payload), (b"",)):
            try:
                await self._nc.publish(subject, message)
                if large:
                    await asyncio.sleep(0)  # let other calls have a turn between chunks
            except asyncio.CancelledError:
                # nats-py queues a message before it may wait on a flush, so this one is out;
                # a shutdown must not cut the stream short: send the rest, then stop.
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _refuse_params(self, export: Export, call: _Call, message: str) -> None:
        if export.refuse_params is None:
            await self._fail(export, call, message)
            return
        await self._handshake(call)
        await self._send_results(
            call, self._codec.encode_values(export.function.results, export.refuse_params(message))
        )

    async def _fail(self, export: Export, call: _Call, message: str) -> None:
        """Answer a call that cannot be served (handshake first, if it has not gone out)."""
        await self._handshake(call)
        payload = b""
        if export.failure_result is not None:
            payload = self._codec.encode_values(
                export.function.results, export.failure_result(message)
            )
        await self._send_results(call, payload)


def _complete_first_payload(codec: Codec, export: Export, payload: bytes) -> tuple[Any, ...] | None:
    """The fast path: a small invocation whose own payload holds every parameter, within the
    export's bounds. None sends the call down the general path (`_receive_params`), which
    also answers what is malformed or refused."""
    if len(payload) > PEEK_BEFORE_DECODING:
        return None
    try:
        params = decode_first_payload(codec, export.function.param_types, payload)
    except CodecError:
        return None  # malformed: the general path answers it
    if params is None:
        return None
    if list_over_bound(export.function, export.max_list_items, params) is not None:
        return None
    return params


def _call(function: Function, exc: BaseException) -> dict[str, str]:
    return {"instance": function.instance, "function": function.name, "error": str(exc)}


__all__ = ["CallContext", "Export", "FailureResult", "Handler", "WrpcServer"]
