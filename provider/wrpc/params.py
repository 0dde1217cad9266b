"""One call's parameters as they arrive, sans-IO: the invocation's own payload first, then the
chunks of the call's params stream; bounded in bytes and in list items (a list over its bound
is refused as soon as its count is in, before the rest is read or decoded)."""

from __future__ import annotations

from typing import Any

from provider.wit.codec import Codec
from provider.wit.model import Function, ListType
from provider.wrpc.framing import ByteStream, StreamTooLarge


class ParamsReception:
    """Settles once: `complete` (every byte is in), `refused` (a list over its bound: the
    export's own failure answer) or `malformed` (the stream broke a rule). `feed` says when."""

    __slots__ = ("_codec", "_function", "_lengths_checked", "_max_items", "_stream", "complete",
                 "malformed", "refused")  # fmt: skip

    def __init__(
        self, codec: Codec, function: Function, max_bytes: int, max_list_items: int | None
    ) -> None:
        self._codec, self._function, self._max_items = codec, function, max_list_items
        self._stream = ByteStream(max_bytes)
        self._lengths_checked = max_list_items is None
        self.complete = False
        self.refused: str | None = None
        self.malformed: str | None = None

    @property
    def settled(self) -> bool:
        return self.complete or self.refused is not None or self.malformed is not None

    @property
    def size(self) -> int:
        return self._stream.size

    def data(self) -> bytes:
        return self._stream.data()

    def feed_first(self, payload: bytes) -> bool:
        """The invocation's own payload (empty: it does not end the stream); True if settled."""
        return bool(payload) and self.feed(payload)

    def feed(self, chunk: bytes) -> bool:
        """A chunk of the params stream; True once settled (later chunks are ignored)."""
        if self.settled:
            return True
        try:
            self.complete = self._stream.feed(chunk)
        except StreamTooLarge as exc:
            self.malformed = str(exc)
            return True
        self.check_list_lengths()
        return self.settled

    def check_list_lengths(self) -> None:
        """Refuse as soon as a list parameter's count is in and over the bound."""
        if self._lengths_checked or self._max_items is None:
            return
        types = self._function.param_types
        lengths = self._codec.leading_list_lengths(types, self._stream.data())
        for length in lengths:
            if length > self._max_items:
                self.refused = too_many(length, self._max_items)
                return
        self._lengths_checked = len(lengths) == sum(1 for t in types if isinstance(t, ListType))

    def over_bound(self, params: tuple[Any, ...]) -> str | None:
        """Decoded parameters' refusal, if a list is over its bound."""
        return list_over_bound(self._function, self._max_items, params)


def list_over_bound(
    function: Function, max_items: int | None, params: tuple[Any, ...]
) -> str | None:
    if max_items is None:
        return None
    for wit_type, value in zip(function.param_types, params, strict=True):
        if isinstance(wit_type, ListType) and len(value) > max_items:
            return too_many(len(value), max_items)
    return None


def too_many(count: int, bound: int) -> str:
    return f"{count} list items given; at most {bound} are accepted"
