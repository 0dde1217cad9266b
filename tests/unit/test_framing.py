"""Sans-IO call framing: subjects, chunking and streams."""

from __future__ import annotations

import pytest

from provider.wit.codec import Codec
from provider.wit.model import postgres_package
from provider.wrpc.framing import (
    ByteStream,
    StreamTooLarge,
    chunks,
    decode_first_payload,
    first_chunk_room,
    header_block_size,
    invocation_subject,
)


def test_a_root_export_has_no_instance_token() -> None:
    assert invocation_subject("default.cid", "", "run") == "default.cid.wrpc.0.0.1.run"


def test_invocation_subject_keeps_instance_dots_and_colons() -> None:
    subject = invocation_subject(
        "default.rust_sqldb_postgres_query-sqldb_postgres",
        "wasmcloud:postgres/query@0.1.1-draft",
        "query",
    )
    assert subject == (
        "default.rust_sqldb_postgres_query-sqldb_postgres.wrpc.0.0.1."
        "wasmcloud:postgres/query@0.1.1-draft.query"
    )


def test_header_block_size_counts_the_nats_header_block() -> None:
    headers = {"source-id": "app-querier", "link-name": "default"}
    block = b"NATS/1.0\r\nsource-id: app-querier\r\nlink-name: default\r\n\r\n"
    assert header_block_size(headers) == len(block)
    assert header_block_size(None) == 0
    assert first_chunk_room(1000, "_INBOX.abc.1", headers) == 1000 - 12 - len(block)


def test_chunks_cover_the_data_in_order() -> None:
    data = bytes(range(256)) * 5
    parts = list(chunks(data, 100))
    assert b"".join(parts) == data
    assert all(len(p) <= 100 for p in parts) and len(parts) == 13
    assert list(chunks(b"", 100)) == []
    with pytest.raises(ValueError):
        list(chunks(data, 0))


def test_byte_stream_ends_on_empty_payload_and_enforces_its_bound() -> None:
    stream = ByteStream(10, b"ab")
    assert stream.feed(b"cd") is False
    assert stream.feed(b"") is True
    assert stream.feed(b"ignored") is True
    assert stream.data() == b"abcd"
    bounded = ByteStream(4)
    with pytest.raises(StreamTooLarge):
        bounded.feed(b"12345")


def test_first_payload_fast_path() -> None:
    codec = Codec()
    query = postgres_package().function("query", "query")
    encoded = codec.encode_values(query.param_types, ["SELECT 1", []])
    assert decode_first_payload(codec, query.param_types, encoded) == ("SELECT 1", [])
    assert decode_first_payload(codec, query.param_types, encoded[:-1]) is None
    assert decode_first_payload(codec, query.param_types, b"") is None
