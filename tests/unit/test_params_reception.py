"""provider/wrpc/params.py: one call's parameters as they arrive, without any I/O."""

from __future__ import annotations

from provider.wit.codec import Codec
from provider.wit.model import postgres_package
from provider.wit.values import Case
from provider.wrpc.params import ParamsReception

CODEC = Codec()
QUERY = postgres_package().function("query", "query")  # (sql: string, params: list<pg-value>)


def encoded(sql: str, count: int) -> bytes:
    return CODEC.encode_values(QUERY.param_types, [sql, [Case("int4", n) for n in range(count)]])


def test_chunks_until_the_empty_end_message_complete_it() -> None:
    data = encoded("SELECT 1", 3)
    reception = ParamsReception(CODEC, QUERY, 1 << 20, 10)
    assert reception.feed_first(data[:5]) is False
    assert reception.feed(data[5:]) is False and not reception.settled
    assert reception.feed(b"") is True
    assert (reception.complete, reception.refused, reception.malformed) == (True, None, None)
    assert reception.data() == data and reception.size == len(data)


def test_an_empty_first_payload_does_not_end_the_stream() -> None:
    reception = ParamsReception(CODEC, QUERY, 1 << 20, None)
    assert reception.feed_first(b"") is False and not reception.settled


def test_a_list_over_its_bound_is_refused_as_soon_as_its_count_is_in() -> None:
    data = encoded("SELECT 1", 12)
    reception = ParamsReception(CODEC, QUERY, 1 << 20, 10)
    count_at = len(CODEC.encode_values(QUERY.param_types[:1], ["SELECT 1"])) + 1
    assert reception.feed_first(data[: count_at - 1]) is False  # the count is not in yet
    assert reception.feed(data[count_at - 1 : count_at + 2]) is True  # now it is: 12 > 10
    assert reception.refused == "12 list items given; at most 10 are accepted"
    assert not reception.complete
    assert reception.feed(data[count_at + 2 :]) is True  # settled: the rest is ignored
    assert reception.size == count_at + 2


def test_a_stream_over_its_byte_bound_is_malformed() -> None:
    reception = ParamsReception(CODEC, QUERY, 16, None)
    assert reception.feed_first(b"x" * 10) is False
    assert reception.feed(b"x" * 10) is True
    assert reception.malformed == "stream exceeds 16 bytes" and reception.refused is None


def test_decoded_parameters_are_checked_against_the_bound() -> None:
    reception = ParamsReception(CODEC, QUERY, 1 << 20, 2)
    assert reception.over_bound(("SELECT 1", [1, 2])) is None
    assert reception.over_bound(("SELECT 1", [1, 2, 3])) == (
        "3 list items given; at most 2 are accepted"
    )
    unbounded = ParamsReception(CODEC, QUERY, 1 << 20, None)
    assert unbounded.over_bound(("SELECT 1", list(range(100_000)))) is None
