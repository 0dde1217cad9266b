"""provider/nats/wire.py: the same events however the server's bytes are split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider.nats import wire as nats_wire
from provider.nats.wire import (
    OK,
    PING,
    PONG,
    Info,
    Msg,
    NatsProtocolError,
    NatsReader,
    ServerError,
    header_block,
)

tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_$", min_size=1, max_size=12)
subjects = st.lists(tokens, min_size=1, max_size=5).map(".".join)
header_maps = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-/ ", max_size=20).map(str.strip),
    max_size=3,
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, object]:
    """One server operation as bytes, with the event it must become."""
    kind = draw(st.sampled_from(["msg", "hmsg", "ping", "pong", "ok", "info", "err"]))
    if kind in ("msg", "hmsg"):
        subject, sid = draw(subjects), draw(st.integers(1, 10_000))
        reply = draw(st.one_of(st.just(""), subjects))
        payload = draw(st.binary(max_size=200))
        reply_part = f" {reply}" if reply else ""
        if kind == "msg":
            line = f"MSG {subject} {sid}{reply_part} {len(payload)}\r\n".encode()
            return line + payload + b"\r\n", Msg(subject, reply, payload, None, sid)
        headers = draw(header_maps)
        block = header_block(headers)
        size = len(block) + len(payload)
        line = f"HMSG {subject} {sid}{reply_part} {len(block)} {size}\r\n".encode()
        return line + block + payload + b"\r\n", Msg(subject, reply, payload, headers, sid)
    if kind == "info":
        return b'INFO {"max_payload":1048576,"nonce":"abc"}\r\n', Info(
            {"max_payload": 1048576, "nonce": "abc"}
        )
    if kind == "err":
        return b"-ERR 'Permissions Violation for Subscription to \"a.b\"'\r\n", ServerError(
            'Permissions Violation for Subscription to "a.b"'
        )
    return {"ping": (b"PING\r\n", PING), "pong": (b"PONG\r\n", PONG), "ok": (b"+OK\r\n", OK)}[kind]


def same(event: object, expected: object) -> bool:
    if isinstance(expected, Msg | Info | ServerError):
        return event == expected
    return event is expected


@given(st.lists(messages(), max_size=12), st.lists(st.integers(0, 4000), max_size=10))
def test_any_split_gives_the_same_events(ops: list[tuple[bytes, object]], cuts: list[int]) -> None:
    stream = b"".join(data for data, _ in ops)
    reader, events, start = NatsReader(), [], 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        events += reader.feed(stream[start:cut])
        start = cut
    assert len(events) == len(ops)
    assert all(same(event, expected) for event, (_, expected) in zip(events, ops, strict=True))


def test_headers_keep_the_first_value_and_a_status_line() -> None:
    block = b"NATS/1.0 503\r\nsource-id: a\r\nsource-id: b\r\ntraceparent: 00-x\r\n\r\n"
    assert nats_wire.parse_headers(block) == {"source-id": "a", "traceparent": "00-x"}


@pytest.mark.parametrize(
    "data",
    [
        b"BOGUS\r\n",
        b"MSG a 1\r\n",  # no size
        b"MSG a 1 3\r\nabcd\r\n",  # the body does not end where its size says
        b"HMSG a 1 40 10\r\n0123456789\r\n",  # header larger than the message
        b"HMSG a 1 5 5\r\nNOPE!\r\n",
    ],
)
def test_malformed_input_is_refused(data: bytes) -> None:
    with pytest.raises(NatsProtocolError):
        NatsReader().feed(data)


def test_an_endless_control_line_is_refused() -> None:
    with pytest.raises(NatsProtocolError):
        NatsReader().feed(b"MSG " + b"a" * (nats_wire.MAX_CONTROL_LINE + 10))


@given(
    subjects,
    st.one_of(st.just(""), subjects),
    st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-/ é€✓", max_size=20).map(str.strip),
        max_size=3,
    ),
    st.one_of(st.integers(0, 300), st.sampled_from([1023, 65535, 65536, 256000, 1024 * 1024])),
)
def test_pub_and_hpub_byte_counts_match_what_follows(
    subject: str, reply: str, headers: dict[str, str], size: int
) -> None:
    """The sizes on a PUB/HPUB line are bytes (multi-byte header values, any payload size):
    read back as the server would deliver it, the same subject, reply, headers and payload."""
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    command = nats_wire.pub_command(subject, payload, reply, headers)
    line, _, rest = command.partition(b"\r\n")
    kind, *fields = line.split(b" ")
    assert kind == (b"HPUB" if headers else b"PUB")
    assert len(rest) == int(fields[-1]) + 2 and rest.endswith(b"\r\n")
    if headers:
        assert rest[: int(fields[-2])].endswith(b"\r\n\r\n")
    delivered = kind.replace(b"PUB", b"MSG") + b" " + b" ".join([fields[0], b"9", *fields[1:]])
    (event,) = NatsReader().feed(delivered + b"\r\n" + rest)
    assert event == Msg(subject, reply, payload, headers or None, 9)


def test_client_commands() -> None:
    assert nats_wire.sub_command("a.>", 3, "q") == b"SUB a.> q 3\r\n"
    assert nats_wire.sub_command("a.b", 4) == b"SUB a.b 4\r\n"
    assert nats_wire.unsub_command(3) == b"UNSUB 3\r\n"
    assert nats_wire.pub_command("s", b"xyz", "r") == b"PUB s r 3\r\nxyz\r\n"
    assert nats_wire.pub_command("s", b"") == b"PUB s 0\r\n\r\n"
    block = header_block({"k": "v"})
    assert nats_wire.pub_command("s", b"x", "", {"k": "v"}) == (
        b"HPUB s %d %d\r\n" % (len(block), len(block) + 1) + block + b"x\r\n"
    )
