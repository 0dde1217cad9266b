"""The prepared-statement registry (`provider.postgres.statements`): pure logic, no server.

Records and their msgpack bytes, pins, one link's LRU bound (what is evicted, in what order),
adopting a record another replica made, and the registry's traffic with the store the replicas
share. That store is an interface of bytes in and out; `MemoryStatements` below keeps it in a
dict, keyed like the JetStream bucket is: by link, then token.
"""

from __future__ import annotations

import gc
import logging
import re
from collections import OrderedDict

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider.postgres.retry import is_read_only
from provider.postgres.statements import (
    MAX_UNFORGOTTEN_LINKS,
    LinkStatements,
    SharedStatements,
    StatementRecord,
    StatementRegistry,
)

LINK = "component-a"
OTHER_LINK = "component-b"
TOKEN = re.compile(r"pstmt-[A-Za-z0-9_-]{22}")
LOGGER = "provider.postgres.statements"


class MemoryStatements:
    """`SharedStatements` in a dict; the operations named in `failing` raise instead."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], bytes] = {}
        self.failing: set[str] = set()

    def _check(self, operation: str) -> None:
        if operation in self.failing:
            raise ConnectionError(f"{operation}: store down")

    async def save(self, link: str, token: str, record: bytes) -> None:
        self._check("save")
        self.records[(link, token)] = record

    async def load(self, link: str, token: str) -> bytes | None:
        self._check("load")
        return self.records.get((link, token))

    async def forget(self, link: str, token: str) -> None:
        self._check("forget")
        self.records.pop((link, token), None)

    async def forget_link(self, link: str) -> None:
        self._check("forget_link")
        for key in [key for key in self.records if key[0] == link]:
            del self.records[key]


def shared_registry(store: MemoryStatements) -> StatementRegistry:
    shared: SharedStatements = store  # checks that the fake has the protocol's shape
    return StatementRegistry(shared)


class Connection:
    """What a pin needs of a connection: `is_closed()` (and weak references)."""

    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(message, the `error` extra) of each warning the module logged."""
    return [
        (record.getMessage(), getattr(record, "error", ""))
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


# --- StatementRecord ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "read_only"),
    [
        ("SELECT id FROM t WHERE id = $1", True),
        ("INSERT INTO t VALUES ($1)", False),
        ("WITH d AS (DELETE FROM t RETURNING id) SELECT id FROM d", False),
    ],
)
def test_record_keeps_token_and_sql_and_derives_read_only_from_sql(
    sql: str, read_only: bool
) -> None:
    record = StatementRecord("pstmt-x", sql)
    assert (record.token, record.sql, record.read_only) == ("pstmt-x", sql, read_only)


def test_record_bytes_are_a_msgpack_triple_of_version_1_token_and_sql() -> None:
    record = StatementRecord("pstmt-x", "SELECT 1")
    assert msgpack.unpackb(record.to_bytes()) == [1, "pstmt-x", "SELECT 1"]


@given(token=st.text(), sql=st.text())
def test_record_round_trips_through_bytes_and_recomputes_read_only(token: str, sql: str) -> None:
    restored = StatementRecord.from_bytes(StatementRecord(token, sql).to_bytes())
    assert (restored.token, restored.sql, restored.read_only) == (token, sql, is_read_only(sql))


def test_record_from_bytes_is_unpinned() -> None:
    record = StatementRecord("pstmt-x", "SELECT 1")
    connection = Connection()
    record.pin_if_unpinned(connection)
    assert StatementRecord.from_bytes(record.to_bytes()).pinned() is None


@pytest.mark.parametrize("version", [0, 2, 99])
def test_from_bytes_refuses_a_record_of_another_version(version: int) -> None:
    data = msgpack.packb((version, "pstmt-x", "SELECT 1"))
    with pytest.raises(ValueError, match=f"^unknown statement record version {version}$"):
        StatementRecord.from_bytes(data)


def test_from_bytes_refuses_a_newer_record_with_more_fields_by_its_version() -> None:
    """The version is read first: a newer replica's longer record is refused as newer."""
    data = msgpack.packb((2, "pstmt-x", "SELECT 1", "a field of version 2"))
    with pytest.raises(ValueError, match=r"^unknown statement record version 2$"):
        StatementRecord.from_bytes(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ValueError),  # incomplete input
        (b"\xc1", ValueError),  # msgpack's never-used byte (FormatError)
        (msgpack.packb((1, "pstmt-x")), ValueError),  # two fields
        (msgpack.packb((1, "pstmt-x", 7)), ValueError),  # SQL that is not text
        (msgpack.packb(5), ValueError),  # not a sequence at all
    ],
)
def test_from_bytes_raises_on_malformed_bytes(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        StatementRecord.from_bytes(data)


# --- pins --------------------------------------------------------------------------------------


def test_new_record_has_no_pin() -> None:
    assert StatementRecord("pstmt-x", "SELECT 1").pinned() is None


def test_pin_if_unpinned_pins_first_connection_and_keeps_it_while_open() -> None:
    record = StatementRecord("pstmt-x", "SELECT 1")
    first, second = Connection(), Connection()
    record.pin_if_unpinned(first)
    record.pin_if_unpinned(second)
    assert record.pinned() is first


def test_closed_pin_reads_as_none_and_the_next_connection_replaces_it() -> None:
    record = StatementRecord("pstmt-x", "SELECT 1")
    first, second = Connection(), Connection()
    record.pin_if_unpinned(first)
    first.closed = True
    assert record.pinned() is None
    record.pin_if_unpinned(second)
    assert record.pinned() is second


def test_pin_does_not_keep_its_connection_alive_and_is_replaced_once_collected() -> None:
    record = StatementRecord("pstmt-x", "SELECT 1")
    first = Connection()
    record.pin_if_unpinned(first)
    del first
    gc.collect()
    assert record.pinned() is None
    second = Connection()
    record.pin_if_unpinned(second)
    assert record.pinned() is second


# --- one link's statements ---------------------------------------------------------------------


def test_register_makes_a_pstmt_token_of_128_random_bits() -> None:
    statements = LinkStatements(10)
    token = statements.register("SELECT 1").token
    assert TOKEN.fullmatch(token) is not None


def test_register_same_sql_returns_the_same_record() -> None:
    statements = LinkStatements(10)
    first = statements.register("SELECT 1")
    assert statements.register("SELECT 1") is first
    assert len(statements) == 1


def test_register_distinct_sql_makes_distinct_tokens() -> None:
    statements = LinkStatements(100)
    tokens = {statements.register(f"SELECT {n}").token for n in range(50)}
    assert len(tokens) == 50
    assert len(statements) == 50


def test_get_finds_the_record_by_token_and_unknown_token_is_none() -> None:
    statements = LinkStatements(10)
    record = statements.register("SELECT 1")
    assert statements.get(record.token) is record
    assert statements.get("pstmt-unknown") is None
    assert len(statements) == 1


def test_bound_evicts_the_least_recently_registered_record() -> None:
    statements = LinkStatements(3)
    a, b, c, d = (statements.register(sql) for sql in ("a", "b", "c", "d"))
    assert statements.take_evicted() == [a.token]
    assert statements.evictions == 1
    assert len(statements) == 3
    assert statements.get(a.token) is None
    assert [statements.get(r.token) for r in (b, c, d)] == [b, c, d]


def test_get_makes_a_record_most_recently_used() -> None:
    statements = LinkStatements(3)
    a, b, _ = (statements.register(sql) for sql in ("a", "b", "c"))
    statements.get(a.token)
    statements.register("d")
    assert statements.take_evicted() == [b.token]
    assert statements.get(a.token) is a


def test_registering_known_sql_again_makes_it_most_recently_used() -> None:
    statements = LinkStatements(3)
    a, b, _ = (statements.register(sql) for sql in ("a", "b", "c"))
    statements.register("a")
    statements.register("d")
    assert statements.take_evicted() == [b.token]
    assert statements.get(a.token) is a


def test_evicted_sql_registered_again_gets_a_new_token() -> None:
    statements = LinkStatements(1)
    a = statements.register("a")
    b = statements.register("b")
    again = statements.register("a")
    assert again.token != a.token
    assert again.sql == "a"
    assert statements.take_evicted() == [a.token, b.token]
    assert statements.get(a.token) is None
    assert statements.get(again.token) is again


def test_take_evicted_returns_evictions_in_order_then_starts_afresh() -> None:
    statements = LinkStatements(2)
    records = [statements.register(f"SELECT {n}") for n in range(5)]
    assert statements.take_evicted() == [r.token for r in records[:3]]
    assert statements.take_evicted() == []
    assert statements.evictions == 3  # the counter is not reset by taking


def test_adopt_returns_the_given_record_and_makes_it_findable() -> None:
    statements = LinkStatements(10)
    record = StatementRecord("pstmt-from-another-replica", "SELECT 1")
    assert statements.adopt(record) is record
    assert statements.get(record.token) is record
    assert statements.register("SELECT 1") is record  # same SQL: the adopted token


def test_adopted_record_is_most_recently_used() -> None:
    statements = LinkStatements(2)
    a = statements.register("a")
    adopted = statements.adopt(StatementRecord("pstmt-other", "x"))
    statements.register("c")
    assert statements.take_evicted() == [a.token]
    assert statements.get(adopted.token) is adopted


def test_adopt_at_the_bound_evicts_the_least_recently_used_record() -> None:
    statements = LinkStatements(2)
    a, b = statements.register("a"), statements.register("b")
    statements.adopt(StatementRecord("pstmt-other", "c"))
    assert statements.take_evicted() == [a.token]
    assert statements.evictions == 1
    assert statements.get(b.token) is b


def test_adopt_of_known_sql_under_another_token_replaces_the_local_token() -> None:
    """Replicas disagree on the token of one SQL: the adopted (other replica's) token wins."""
    statements = LinkStatements(10)
    local = statements.register("SELECT 1")
    other = StatementRecord("pstmt-other", "SELECT 1")
    statements.adopt(other)
    assert statements.get(local.token) is None
    assert statements.get(other.token) is other
    assert statements.register("SELECT 1") is other
    assert len(statements) == 1
    assert statements.take_evicted() == []  # replaced, not evicted: nothing to forget
    assert statements.evictions == 0


@given(bound=st.integers(1, 40), inserts=st.integers(0, 200))
def test_bound_holds_under_many_inserts_and_evicts_oldest_first(bound: int, inserts: int) -> None:
    statements = LinkStatements(bound)
    tokens = [statements.register(f"SELECT {n}").token for n in range(inserts)]
    assert len(statements) == min(inserts, bound)
    assert statements.evictions == max(0, inserts - bound)
    assert statements.take_evicted() == tokens[: max(0, inserts - bound)]


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["register", "get", "adopt"]), st.integers(0, 11)), max_size=80
)


@given(bound=st.integers(1, 6), operations=OPERATIONS)
def test_link_statements_behave_like_an_lru_of_sql_to_token(
    bound: int, operations: list[tuple[str, int]]
) -> None:
    """Against a model LRU: same evictions in the same order, the bound never exceeded, and
    the record just used never evicted by that use."""
    statements = LinkStatements(bound)
    model: OrderedDict[str, str] = OrderedDict()  # sql → token, least recently used first
    gone: dict[str, str] = {}  # sql → a token it had before it was evicted or replaced
    adopted = 0
    for operation, n in operations:
        sql = f"SELECT {n}"
        expected_evicted: list[str] = []
        if operation == "register":
            token = statements.register(sql).token
            if sql in model:
                assert token == model[sql]
                model.move_to_end(sql)
            else:
                assert token not in model.values()
                model[sql] = token
        elif operation == "get":
            if sql in model:
                found = statements.get(model[sql])
                assert found is not None
                assert found.sql == sql
                model.move_to_end(sql)
            elif sql in gone:
                assert statements.get(gone[sql]) is None
            token = ""
        else:
            adopted += 1
            token = f"pstmt-adopted-{adopted}"
            assert statements.adopt(StatementRecord(token, sql)).token == token
            if sql in model:
                gone[sql] = model.pop(sql)  # replaced: not an eviction
            model[sql] = token
        while len(model) > bound:
            evicted_sql, evicted_token = model.popitem(last=False)
            gone[evicted_sql] = evicted_token
            expected_evicted.append(evicted_token)
        evicted = statements.take_evicted()
        assert evicted == expected_evicted
        assert token not in evicted
        assert len(statements) == len(model) <= bound
    # The survivors, visited least recently used first (which keeps their order).
    for sql, token in model.items():
        found = statements.get(token)
        assert found is not None
        assert (found.token, found.sql) == (token, sql)


# --- the registry: links -----------------------------------------------------------------------


def test_registry_register_reports_how_many_records_this_call_evicted() -> None:
    registry = StatementRegistry()
    counts = [registry.register(LINK, f"SELECT {n}", 2)[1] for n in range(4)]
    assert counts == [0, 0, 1, 1]
    assert registry.count(LINK) == 2


def test_registry_register_same_sql_returns_same_token_without_evicting() -> None:
    registry = StatementRegistry()
    first, _ = registry.register(LINK, "SELECT 1", 1)
    again, evicted = registry.register(LINK, "SELECT 1", 1)
    assert (again, evicted) == (first, 0)


def test_tokens_are_scoped_to_the_link_that_registered_them() -> None:
    registry = StatementRegistry()
    mine, _ = registry.register(LINK, "SELECT 1", 10)
    theirs, _ = registry.register(OTHER_LINK, "SELECT 1", 10)
    assert mine.token != theirs.token
    assert registry.lookup(LINK, mine.token) is mine
    assert registry.lookup(OTHER_LINK, mine.token) is None
    assert registry.lookup("no-such-link", mine.token) is None


def test_count_is_zero_for_an_unknown_link() -> None:
    assert StatementRegistry().count(LINK) == 0


def test_forget_link_drops_that_links_records_only() -> None:
    registry = StatementRegistry()
    mine, _ = registry.register(LINK, "SELECT 1", 10)
    theirs, _ = registry.register(OTHER_LINK, "SELECT 1", 10)
    registry.forget_link(LINK)
    registry.forget_link("no-such-link")
    assert registry.count(LINK) == 0
    assert registry.lookup(LINK, mine.token) is None
    assert registry.lookup(OTHER_LINK, theirs.token) is theirs


def test_lookup_refreshes_recency_in_the_registry() -> None:
    registry = StatementRegistry()
    a, _ = registry.register(LINK, "a", 2)
    b, _ = registry.register(LINK, "b", 2)
    registry.lookup(LINK, a.token)
    registry.register(LINK, "c", 2)
    assert registry.lookup(LINK, b.token) is None
    assert registry.lookup(LINK, a.token) is a


def test_registry_bound_follows_a_links_new_max_statements() -> None:
    """A link updated in place (same pool, new POSTGRES_MAX_STATEMENTS) gets its new bound."""
    registry = StatementRegistry()
    a, _ = registry.register(LINK, "a", 2)
    b, _ = registry.register(LINK, "b", 5)
    c, _ = registry.register(LINK, "c", 5)
    assert registry.count(LINK) == 3  # raised: nothing evicted
    d, evicted = registry.register(LINK, "d", 2)
    assert (evicted, registry.count(LINK)) == (2, 2)  # lowered: the two oldest go at once
    assert [registry.lookup(LINK, r.token) for r in (a, b, c, d)] == [None, None, c, d]


# --- the registry and the shared store ---------------------------------------------------------


async def test_share_saves_the_record_bytes_under_link_and_token() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    await registry.share(LINK, record)
    assert store.records == {(LINK, record.token): record.to_bytes()}


async def test_share_forgets_the_tokens_the_bound_evicted_since_the_last_share() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    a, _ = registry.register(LINK, "a", 2)
    await registry.share(LINK, a)
    b, _ = registry.register(LINK, "b", 2)
    await registry.share(LINK, b)
    c, _ = registry.register(LINK, "c", 2)
    d, _ = registry.register(LINK, "d", 2)  # two evictions before one share
    await registry.share(LINK, d)
    assert set(store.records) == {(LINK, d.token)}
    assert registry.lookup(LINK, c.token) is c  # never shared, still local


async def test_share_without_a_store_still_takes_the_evictions() -> None:
    """Evictions taken while no store was set are not forgotten later, when one is."""
    store = MemoryStatements()
    registry = StatementRegistry()
    a, _ = registry.register(LINK, "a", 1)
    store.records[(LINK, a.token)] = a.to_bytes()  # as if a replica had shared it
    b, _ = registry.register(LINK, "b", 1)  # evicts a
    await registry.share(LINK, b)
    registry.shared = store
    c, _ = registry.register(LINK, "c", 1)  # evicts b
    await registry.share(LINK, c)
    assert set(store.records) == {(LINK, a.token), (LINK, c.token)}


async def test_share_for_a_link_without_records_saves_the_record() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    record = StatementRecord("pstmt-x", "SELECT 1")
    await registry.share(LINK, record)
    assert store.records == {(LINK, "pstmt-x"): record.to_bytes()}


async def test_share_save_failure_is_logged_and_the_token_still_works_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStatements()
    store.failing.add("save")
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await registry.share(LINK, record)
    assert warnings_logged(caplog) == [("statement not shared with replicas", "save: store down")]
    assert store.records == {}
    assert registry.lookup(LINK, record.token) is record


async def test_share_save_failure_keeps_pending_evictions_for_the_next_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed save does not lose the evictions: the next share forgets them, so an evicted
    token never comes back from the store."""
    store = MemoryStatements()
    registry = shared_registry(store)
    a, _ = registry.register(LINK, "a", 1)
    await registry.share(LINK, a)
    b, _ = registry.register(LINK, "b", 1)  # evicts a
    store.failing.add("save")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await registry.share(LINK, b)
    store.failing.clear()
    c, _ = registry.register(LINK, "c", 1)  # evicts b (never shared)
    await registry.share(LINK, c)
    assert set(store.records) == {(LINK, c.token)}
    assert await registry.find(LINK, a.token, 1) is None


async def test_share_forget_failure_is_logged_after_the_record_was_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    a, _ = registry.register(LINK, "a", 1)
    await registry.share(LINK, a)
    b, _ = registry.register(LINK, "b", 1)
    store.failing.add("forget")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await registry.share(LINK, b)
    assert warnings_logged(caplog) == [("statement not shared with replicas", "forget: store down")]
    assert set(store.records) == {(LINK, a.token), (LINK, b.token)}


async def test_find_returns_the_local_record_without_asking_the_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStatements()
    store.failing.add("load")
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await registry.find(LINK, record.token, 10) is record
    assert warnings_logged(caplog) == []


async def test_find_without_a_store_returns_none_for_an_unknown_token() -> None:
    registry = StatementRegistry()
    registry.register(LINK, "SELECT 1", 10)
    assert await registry.find(LINK, "pstmt-unknown", 10) is None
    assert registry.count(LINK) == 1


async def test_find_adopts_the_record_another_replica_shared() -> None:
    store = MemoryStatements()
    first, second = shared_registry(store), shared_registry(store)
    record, _ = first.register(LINK, "SELECT 1", 10)
    await first.share(LINK, record)
    found = await second.find(LINK, record.token, 10)
    assert found is not None
    assert found is not record  # read from the bytes
    assert (found.token, found.sql, found.read_only) == (record.token, "SELECT 1", True)
    assert second.lookup(LINK, record.token) is found
    assert second.register(LINK, "SELECT 1", 10) == (found, 0)


async def test_find_creates_the_link_with_the_bound_it_is_given() -> None:
    store = MemoryStatements()
    first, second = shared_registry(store), shared_registry(store)
    record, _ = first.register(LINK, "a", 10)
    await first.share(LINK, record)
    assert await second.find(LINK, record.token, 1) is not None
    _, evicted = second.register(LINK, "b", 1)
    assert evicted == 1
    assert second.lookup(LINK, record.token) is None
    assert second.count(LINK) == 1


async def test_find_a_token_the_store_does_not_have_returns_none() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    assert await registry.find(LINK, "pstmt-unknown", 10) is None
    assert registry.count(LINK) == 0


async def test_find_does_not_return_a_record_another_link_shared() -> None:
    store = MemoryStatements()
    first, second = shared_registry(store), shared_registry(store)
    record, _ = first.register(OTHER_LINK, "SELECT 1", 10)
    await first.share(OTHER_LINK, record)
    assert await second.find(LINK, record.token, 10) is None
    assert second.count(LINK) == 0


async def test_find_refuses_a_stored_record_whose_token_differs_from_its_key() -> None:
    store = MemoryStatements()
    store.records[(LINK, "pstmt-asked")] = StatementRecord("pstmt-other", "SELECT 1").to_bytes()
    registry = shared_registry(store)
    assert await registry.find(LINK, "pstmt-asked", 10) is None
    assert registry.lookup(LINK, "pstmt-other") is None
    assert registry.count(LINK) == 0


async def test_find_returns_none_and_logs_when_the_store_cannot_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    await registry.share(LINK, record)
    registry.forget_link(LINK)
    store.failing.add("load")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await registry.find(LINK, record.token, 10) is None
    assert warnings_logged(caplog) == [("shared statements unavailable", "load: store down")]


async def test_find_treats_a_record_of_an_unknown_version_as_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A newer replica's format (a rolling upgrade): the token is unknown here, said in the
    log, and the exec that asked gets unknown-prepared-query rather than an internal error."""
    store = MemoryStatements()
    store.records[(LINK, "pstmt-x")] = msgpack.packb((2, "pstmt-x", "SELECT 1"))
    registry = shared_registry(store)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert await registry.find(LINK, "pstmt-x", 10) is None
    assert warnings_logged(caplog) == [
        ("shared statement record unreadable", "unknown statement record version 2")
    ]
    assert registry.count(LINK) == 0


async def test_forget_link_keeps_the_shared_records_so_find_restores_them() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    await registry.share(LINK, record)
    registry.forget_link(LINK)
    assert registry.lookup(LINK, record.token) is None
    found = await registry.find(LINK, record.token, 10)
    assert found is not None
    assert found.token == record.token


async def test_replicas_that_disagree_on_a_token_let_the_adopted_one_win_each_time() -> None:
    """Two replicas prepared the same SQL under two tokens: exec of either token works on
    the second replica, each adoption replacing the other token there (the store keeps both)."""
    store = MemoryStatements()
    first, second = shared_registry(store), shared_registry(store)
    theirs, _ = first.register(LINK, "SELECT 1", 10)
    await first.share(LINK, theirs)
    mine, _ = second.register(LINK, "SELECT 1", 10)
    await second.share(LINK, mine)
    assert mine.token != theirs.token

    adopted = await second.find(LINK, theirs.token, 10)
    assert adopted is not None
    assert adopted.token == theirs.token
    assert second.lookup(LINK, mine.token) is None
    assert second.register(LINK, "SELECT 1", 10) == (adopted, 0)
    assert second.count(LINK) == 1

    back = await second.find(LINK, mine.token, 10)
    assert back is not None
    assert back.token == mine.token
    assert second.lookup(LINK, theirs.token) is None
    assert second.count(LINK) == 1
    assert set(store.records) == {(LINK, theirs.token), (LINK, mine.token)}


async def test_evictions_by_adoption_leave_the_store_at_the_next_share() -> None:
    store = MemoryStatements()
    first, second = shared_registry(store), shared_registry(store)
    theirs, _ = first.register(LINK, "x", 1)
    await first.share(LINK, theirs)
    mine, _ = second.register(LINK, "a", 1)
    await second.share(LINK, mine)

    assert await second.find(LINK, theirs.token, 1) is not None  # evicts `mine` here
    assert set(store.records) == {(LINK, theirs.token), (LINK, mine.token)}

    newer, _ = second.register(LINK, "b", 1)  # evicts the adopted record in turn
    await second.share(LINK, newer)
    assert set(store.records) == {(LINK, newer.token)}
    assert first.lookup(LINK, theirs.token) is theirs  # still local on the replica that made it


async def test_forget_shared_removes_that_links_records_only() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    mine, _ = registry.register(LINK, "SELECT 1", 10)
    theirs, _ = registry.register(OTHER_LINK, "SELECT 1", 10)
    await registry.share(LINK, mine)
    await registry.share(OTHER_LINK, theirs)
    await registry.forget_shared(LINK)
    assert set(store.records) == {(OTHER_LINK, theirs.token)}
    assert registry.lookup(LINK, mine.token) is mine  # the local records are forget_link's


async def test_forget_shared_failure_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    record, _ = registry.register(LINK, "SELECT 1", 10)
    await registry.share(LINK, record)
    store.failing.add("forget_link")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await registry.forget_shared(LINK)
    assert warnings_logged(caplog) == [
        ("shared statements not forgotten", "forget_link: store down")
    ]
    assert set(store.records) == {(LINK, record.token)}


async def test_a_link_deleted_while_the_store_was_down_is_erased_once_it_answers() -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    for link in (LINK, OTHER_LINK):
        record, _ = registry.register(link, "SELECT 1", 10)
        await registry.share(link, record)
    store.failing.add("forget_link")
    await registry.forget_shared(LINK)
    assert registry.unforgotten() == 1
    store.failing.clear()
    newer, _ = registry.register(OTHER_LINK, "SELECT 2", 10)
    await registry.share(OTHER_LINK, newer)  # the store answers: what was kept goes now
    assert registry.erasing is not None  # in the background, not inside the guest's prepare
    await registry.erasing
    assert {link for link, _ in store.records} == {OTHER_LINK}
    assert registry.unforgotten() == 0


async def test_a_link_put_again_keeps_its_records() -> None:
    """Deleted while the store was down, then put again: its new records are live."""
    store = MemoryStatements()
    registry = shared_registry(store)
    store.failing.add("forget_link")
    await registry.forget_shared(LINK)
    registry.keep_shared(LINK)
    store.failing.clear()
    record, _ = registry.register(LINK, "SELECT 1", 10)
    await registry.share(LINK, record)
    assert set(store.records) == {(LINK, record.token)}
    assert registry.unforgotten() == 0


async def test_links_left_to_erase_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStatements()
    registry = shared_registry(store)
    store.failing.add("forget_link")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for n in range(MAX_UNFORGOTTEN_LINKS + 3):
            await registry.forget_shared(f"link-{n}")
    assert registry.unforgotten() == MAX_UNFORGOTTEN_LINKS
    left = [r for r in caplog.records if r.getMessage().endswith("left in the store")]
    assert [getattr(r, "link", None) for r in left] == ["link-0", "link-1", "link-2"]
