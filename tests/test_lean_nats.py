"""The benchmark's lean NATS parser: the same events however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.lean_nats import PING, PONG, Info, Message, NatsParser, header_block, publish

STREAM = (
    b'INFO {"max_payload": 1048576}\r\n'
    b"PING\r\n"
    b"MSG a.b 1 12\r\nhello\r\nworld\r\n"
    b"MSG _INBOX.x.1 1 _INBOX.y.7 0\r\n\r\n"
    + b"HMSG a.results 1 %d %d\r\n"
    % (len(header_block({"k": "v"})), len(header_block({"k": "v"})) + 3)
    + header_block({"k": "v"})
    + b"\x00\x01\x02\r\n"
    b"PONG\r\n"
)
EXPECTED = [
    Info({"max_payload": 1048576}),
    PING,
    Message(b"a.b", b"", b"hello\r\nworld"),
    Message(b"_INBOX.x.1", b"_INBOX.y.7", b""),
    Message(b"a.results", b"", b"\x00\x01\x02"),
    PONG,
]


def test_whole_stream() -> None:
    assert NatsParser().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    parser, events, start = NatsParser(), [], 0
    for cut in [*sorted(cuts), len(STREAM)]:
        events += parser.feed(STREAM[start:cut])
        start = cut
    assert events == EXPECTED


def test_publish_commands() -> None:
    assert publish(b"s", b"abc", b"r") == b"PUB s r 3\r\nabc\r\n"
    headers = header_block({"source-id": "c"})
    assert publish(b"s", b"x", b"", headers) == (
        b"HPUB s %d %d\r\n" % (len(headers), len(headers) + 1) + headers + b"x\r\n"
    )
