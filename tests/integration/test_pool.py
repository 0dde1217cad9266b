"""LinkPool against a real PostgreSQL: cancellation, retirement, failed resets, reconnecting.

The faults are real: backends are ended with pg_terminate_backend, and a TCP proxy of the
test's own stands between the pool and the server where a test needs the network to misbehave
(accept and never answer, answer the startup and then go silent, hang up at once, or hold back
a dead backend's last words until the client writes again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from provider.postgres import pool as pool_module
from provider.postgres.config import ConnectionSettings
from provider.postgres.pool import AcquireTimeout, LinkPool, PoolRetired, describe
from tests import waiting

BOUND = 5.0  # seconds any single step may take before the test calls it a hang
STARTUP_DATESTYLE = "ISO, YMD"  # what every connection is opened with (session.py)


# Polled every 2 ms: some steps race with a slot being handed over.
until = functools.partial(waiting.until, seconds=BOUND, every=0.002)


# --- a TCP proxy in front of the test server --------------------------------------------------


@dataclass(eq=False)
class ProxyLink:
    """One client connection through the proxy, and what happened to it."""

    mode: str
    accepted_at: float
    mute: bool = False  # drop what the server sends
    hold: bool = False  # keep what the server sends, its hang-up too, until the client writes
    held: bytearray = field(default_factory=bytearray)
    stalled: bool = False  # muted itself after the server's first ReadyForQuery
    upstream_gone: bool = False
    client_gone: bool = False  # the client closed (or aborted) its end
    wrote_after_upstream_gone: bool = False


class Proxy:
    """Forwards to the test server, or misbehaves as `mode` says (read at each accept):
    "forward"; "silent" (accept, read, never answer); "drop" (accept and hang up at once);
    "stall_after_ready" (forward until the server's first ReadyForQuery, then drop the rest)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.mode = "forward"
        self.links: list[ProxyLink] = []
        self.port = 0
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def accepted_since(self, index: int) -> list[float]:
        return [link.accepted_at for link in self.links[index:]]

    async def start(self) -> None:
        self._listener = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._listener is not None
        self._listener.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = ProxyLink(self.mode, time.monotonic())
        self.links.append(link)
        try:
            await self._proxy(link, reader, writer)
        except asyncio.CancelledError:
            pass  # `stop`: nobody awaits this task but `stop` itself
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _proxy(
        self, link: ProxyLink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.mode == "drop":
            return
        if link.mode == "silent":
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            link.client_gone = True
            return
        if self.server.host.startswith("/"):
            socket_path = f"{self.server.host}/.s.PGSQL.{self.server.port}"
            up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
        else:
            up_reader, up_writer = await asyncio.open_connection(self.server.host, self.server.port)
        try:
            await asyncio.gather(
                self._client_to_server(link, reader, writer, up_writer),
                self._server_to_client(link, up_reader, writer),
            )
        finally:
            up_writer.close()

    async def _client_to_server(
        self,
        link: ProxyLink,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if link.upstream_gone:  # held: now the client learns the backend is gone
                    link.wrote_after_upstream_gone = True
                    writer.write(bytes(link.held))
                    await writer.drain()
                    writer.close()
                    return
                up_writer.write(data)
                await up_writer.drain()
        link.client_gone = True
        up_writer.close()

    async def _server_to_client(
        self, link: ProxyLink, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        pending = bytearray()
        with contextlib.suppress(ConnectionError):
            while data := await up_reader.read(65536):
                if link.hold:
                    link.held += data
                elif link.mute:
                    pass
                elif link.mode == "stall_after_ready":
                    pending += data
                    while len(pending) >= 5:  # whole messages: type byte, int32 length
                        size = 1 + int.from_bytes(pending[1:5], "big")
                        if len(pending) < size:
                            break
                        message, pending = pending[:size], pending[size:]
                        writer.write(message)
                        if message[:1] == b"Z":
                            link.mute = link.stalled = True
                            break
                    await writer.drain()
                else:
                    writer.write(data)
                    await writer.drain()
        link.upstream_gone = True
        if not link.hold:
            writer.close()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def proxy(postgres_server: Any) -> AsyncIterator[Proxy]:
    running = Proxy(postgres_server)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def admin(postgres_server: Any, database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(postgres_server.dsn(database), ssl=False)
    yield connection
    await connection.close()


@dataclass
class Recorded:
    waits: list[float] = field(default_factory=list)
    hand_overs: list[float] = field(default_factory=list)


class Pools:
    """Makes pools on the test server (directly or through a proxy); closes them afterwards."""

    def __init__(self, server: Any, database: str) -> None:
        self.server, self.database = server, database
        self.made: list[LinkPool] = []

    def new(
        self,
        *,
        size: int = 2,
        acquire_timeout: float = BOUND,
        proxy: Proxy | None = None,
        database: str | None = None,
        recorded: Recorded | None = None,
    ) -> LinkPool:
        settings = ConnectionSettings(
            host="127.0.0.1" if proxy is not None else self.server.host,
            port=proxy.port if proxy is not None else self.server.port,
            username=self.server.user,
            password=self.server.password,
            database=database or self.database,
            tls_required=False,
            tls_ca=None,
            pool_size=size,
            max_statements=10_000,
            statements_per_connection=256,
            acquire_timeout=acquire_timeout,
        )
        on_wait = recorded.waits.append if recorded is not None else None
        on_hand_over = recorded.hand_overs.append if recorded is not None else None
        made = LinkPool(settings, on_wait=on_wait, on_hand_over=on_hand_over)
        self.made.append(made)
        return made


@pytest.fixture
async def pools(postgres_server: Any, database: str) -> AsyncIterator[Pools]:
    maker = Pools(postgres_server, database)
    yield maker
    for made in maker.made:
        await made.close(timeout=1)


def numbers(size: int, open_: int, in_use: int, waiting: int = 0) -> dict[str, int]:
    return {
        "pool_size": size,
        "pool_open": open_,
        "pool_in_use": in_use,
        "pool_idle": open_ - in_use,
        "pool_waiting": waiting,
        "connection_statements": 0,
    }


async def serves_exactly(pool: LinkPool, count: int) -> None:
    """`count` callers at once get distinct working connections, and caller `count + 1` waits
    (so no slot was lost, and none was made up); all given back afterwards."""
    held = await asyncio.wait_for(asyncio.gather(*(pool.acquire() for _ in range(count))), BOUND)
    assert len({id(c) for c in held}) == count
    assert [await c.fetchval("SELECT $1::int", i) for i, c in enumerate(held)] == list(range(count))
    extra = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 1, "one more caller waits")
    assert not extra.done()
    await pool.release(held[0])
    assert await asyncio.wait_for(extra, BOUND) is held[0]
    for connection in held:
        await pool.release(connection)
    assert pool.snapshot() == numbers(pool.size, count, 0)


async def backend_alive(admin: Any, pid: int) -> bool:
    alive: bool = await admin.fetchval(
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $1", pid
    )
    return alive


async def until_backend_gone(admin: Any, pid: int) -> None:
    deadline = time.monotonic() + BOUND
    while await backend_alive(admin, pid):
        assert time.monotonic() < deadline, f"backend {pid} still there after {BOUND} s"
        await asyncio.sleep(0.01)


async def connected_then_dropped(pool: LinkPool) -> None:
    """The pool has connected once (so it retries connects) and holds no connection now."""
    connection = await pool.acquire()
    connection.terminate()
    await pool.release(connection)
    assert pool.ever_connected
    assert pool.snapshot() == numbers(pool.size, 0, 0)


# --- cancellation while waiting for a slot ----------------------------------------------------


async def test_cancelled_waiter_leaves_no_slot_behind(pools: Pools) -> None:
    pool = pools.new(size=2)
    first, second = await pool.acquire(), await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 1, "the third caller waits")
    assert describe(pool) == "pool 2/2 in use of 2, 1 waiting"

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert pool.snapshot() == numbers(2, 2, 2)
    await pool.release(first)
    await pool.release(second)
    await serves_exactly(pool, 2)


async def test_waiter_cancelled_as_the_slot_reaches_it_passes_the_slot_on(pools: Pools) -> None:
    recorded = Recorded()
    pool = pools.new(size=1, recorded=recorded)
    busy = await pool.acquire()
    first = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 1, "the first waiter waits")
    second = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 2, "the second waiter waits")

    # A clean release never suspends: the slot is handed to `first` and, before `first` can
    # run, it is cancelled. The slot must go on to `second`.
    await pool.release(busy)
    first.cancel()

    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, BOUND) is busy
    assert pool.snapshot() == numbers(1, 1, 1)
    assert len(recorded.waits) == 1  # only the waiter that got a slot reports its wait
    assert 0 < recorded.waits[0] < BOUND
    await pool.release(busy)
    await serves_exactly(pool, 1)


async def test_acquire_times_out_with_a_typed_error_and_keeps_the_slot_count(
    pools: Pools,
) -> None:
    pool = pools.new(size=1, acquire_timeout=0.25)
    busy = await pool.acquire()
    started = time.monotonic()
    with pytest.raises(AcquireTimeout) as raised:
        await asyncio.wait_for(pool.acquire(), BOUND)
    assert time.monotonic() - started >= 0.24
    assert str(raised.value) == (
        "no database connection free within 0.25 s "
        "(POSTGRES_ACQUIRE_TIMEOUT; all 1 of the link's connections are busy)"
    )
    assert pool.snapshot() == numbers(1, 1, 1)
    await pool.release(busy)
    await serves_exactly(pool, 1)


# --- cancellation while connecting ------------------------------------------------------------


@pytest.mark.parametrize("where", ["no_answer", "after_startup", "reconnect_backoff"])
async def test_cancel_during_connect_leaks_nothing(pools: Pools, proxy: Proxy, where: str) -> None:
    pool = pools.new(size=2, proxy=proxy)
    start = len(proxy.links)
    if where == "no_answer":  # TCP accepted, the startup message never answered
        proxy.mode = "silent"
        ready = lambda: len(proxy.links) == start + 1  # noqa: E731
    elif where == "after_startup":  # connected; the connection's own set-up queries hang
        proxy.mode = "stall_after_ready"
        ready = lambda: len(proxy.links) == start + 1 and proxy.links[-1].stalled  # noqa: E731
    else:  # the server hangs up on every attempt: the pool sleeps between attempts
        await connected_then_dropped(pool)
        start = len(proxy.links)
        proxy.mode = "drop"
        ready = lambda: len(proxy.links) >= start + 2  # noqa: E731

    caller = asyncio.create_task(pool.acquire())
    await until(ready, f"the connect is under way ({where})")
    assert not caller.done()
    caller.cancel()
    # Kept: its traceback keeps the half-made connection alive, so only the code under test,
    # not the garbage collector, can have closed its socket.
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await caller

    attempts = proxy.links[start:]
    if where != "reconnect_backoff":
        assert len(attempts) == 1
        await until(lambda: attempts[0].client_gone, "the client closed its socket")
    assert cancelled.type is asyncio.CancelledError
    assert pool.snapshot() == numbers(2, 0, 0)
    proxy.mode = "forward"
    await serves_exactly(pool, 2)


# --- a pool retired or closed under a waiting caller ------------------------------------------


async def test_retired_pool_refuses_new_callers_and_closes_its_idle_connections(
    pools: Pools, admin: Any
) -> None:
    pool = pools.new(size=2)
    connection = await pool.acquire()
    pid = connection.get_server_pid()
    await pool.release(connection)
    await pool.retire()
    assert connection.is_closed()
    await until_backend_gone(admin, pid)
    with pytest.raises(PoolRetired, match="the link's pool was replaced"):
        await pool.acquire()
    assert pool.snapshot() == numbers(2, 0, 0)


async def test_retire_tells_waiters_at_once_and_lets_the_running_call_finish(
    pools: Pools, admin: Any
) -> None:
    pool = pools.new(size=1)
    busy = await pool.acquire()
    pid = busy.get_server_pid()
    waiter = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 1, "the caller waits")
    await pool.retire()
    # Told before the running call ends (it may run for minutes): the service moves it to
    # the link's new pool.
    with pytest.raises(PoolRetired, match="the link's pool was replaced"):
        await asyncio.wait_for(waiter, 0.5)
    assert pool.waiting == 0
    assert not busy.is_closed()  # the running call finishes on its connection

    await pool.release(busy)  # the running call ends: its connection is closed, not kept
    assert busy.is_closed()
    await until_backend_gone(admin, pid)
    assert pool.snapshot() == numbers(1, 0, 0)


async def test_closed_pool_terminates_busy_connections_and_its_waiter_gets_pool_retired(
    pools: Pools, admin: Any
) -> None:
    pool = pools.new(size=1)
    busy = await pool.acquire()
    pid = busy.get_server_pid()
    waiter = asyncio.create_task(pool.acquire())
    await until(lambda: pool.waiting == 1, "the caller waits")
    await pool.close()
    assert busy.is_closed()  # terminated at once, not left to finish
    with pytest.raises(asyncpg.exceptions.InterfaceError, match="connection is closed"):
        await busy.fetchval("SELECT 1")
    await pool.release(busy)  # the failed call gives its connection back ...
    with pytest.raises(PoolRetired):  # ... and the waiter learns at once
        await asyncio.wait_for(waiter, BOUND)
    with pytest.raises(PoolRetired):
        await pool.acquire()
    await until_backend_gone(admin, pid)
    assert pool.snapshot() == numbers(1, 0, 0, waiting=0)


# --- failed session reset ---------------------------------------------------------------------


async def end_backend_unseen(admin: Any, link: ProxyLink, pid: int) -> None:
    """Terminate the backend; the client learns of it only when it next writes."""
    link.hold = True
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
    await until(lambda: link.upstream_gone, "the backend hung up")


async def test_failed_reset_on_release_discards_the_connection(
    pools: Pools, proxy: Proxy, admin: Any
) -> None:
    pool = pools.new(size=1, proxy=proxy)
    connection = await pool.acquire()
    link = proxy.links[-1]
    pid = connection.get_server_pid()
    assert await connection.fetchval("SHOW DateStyle") == STARTUP_DATESTYLE
    await connection.execute("SET DateStyle = 'German'")  # the next call must not see this
    assert connection.needs_reset()

    await end_backend_unseen(admin, link, pid)
    assert not connection.is_closed()  # the client does not know yet
    await asyncio.wait_for(pool.release(connection), BOUND)

    assert link.wrote_after_upstream_gone  # the reset was tried, and failed
    assert connection.is_closed()
    assert pool.snapshot() == numbers(1, 0, 0)
    fresh = await pool.acquire()
    assert fresh is not connection
    assert fresh.get_server_pid() != pid
    assert await fresh.fetchval("SHOW DateStyle") == STARTUP_DATESTYLE
    await pool.release(fresh)
    await serves_exactly(pool, 1)


async def test_backend_terminated_while_out_is_dropped_on_release(pools: Pools, admin: Any) -> None:
    pool = pools.new(size=2)
    connection = await pool.acquire()
    pid = connection.get_server_pid()
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
    await until(connection.is_closed, "the client saw the backend go")
    await pool.release(connection)
    assert pool.snapshot() == numbers(2, 0, 0)
    fresh = await pool.acquire()
    assert fresh.get_server_pid() != pid
    assert await fresh.fetchval("SELECT 41 + 1") == 42
    await pool.release(fresh)
    await serves_exactly(pool, 2)


async def test_release_resets_a_changed_session_and_keeps_the_connection(
    pools: Pools,
) -> None:
    pool = pools.new(size=1)
    connection = await pool.acquire()
    await connection.execute("BEGIN; SET DateStyle = 'German'")
    assert connection.is_in_transaction()
    await pool.release(connection)
    assert not connection.is_in_transaction()
    assert not connection.needs_reset()
    again = await pool.acquire()
    assert again is connection
    assert await again.fetchval("SHOW DateStyle") == STARTUP_DATESTYLE
    await pool.release(again)
    assert pool.snapshot() == numbers(1, 1, 0)


# --- hand-over between links sharing a pool ---------------------------------------------------


async def test_hand_over_to_another_link_resets_what_detection_cannot_see(
    pools: Pools,
) -> None:
    recorded = Recorded()
    pool = pools.new(size=1, recorded=recorded)
    connection = await pool.acquire(user="a")
    # application_name is not among the settings checked on release: no reset then.
    await connection.fetchval("SELECT set_config('application_name', 'set_by_a', false)")
    await pool.release(connection)
    same_link = await pool.acquire(user="a")
    assert same_link is connection
    assert await same_link.fetchval("SHOW application_name") == "set_by_a"
    assert recorded.hand_overs == []
    await pool.release(same_link)

    other_link = await pool.acquire(user="b")
    assert other_link is connection
    assert other_link.last_user == "b"
    assert await other_link.fetchval("SHOW application_name") == ""
    assert len(recorded.hand_overs) == 1
    await pool.release(other_link)


async def test_failed_hand_over_reset_opens_a_fresh_connection(
    pools: Pools, proxy: Proxy, admin: Any
) -> None:
    recorded = Recorded()
    pool = pools.new(size=1, proxy=proxy, recorded=recorded)
    connection = await pool.acquire(user="a")
    link = proxy.links[-1]
    pid = connection.get_server_pid()
    await pool.release(connection)
    await end_backend_unseen(admin, link, pid)
    assert not connection.is_closed()

    fresh = await asyncio.wait_for(pool.acquire(user="b"), BOUND)
    assert link.wrote_after_upstream_gone  # the hand-over reset was tried, and failed
    assert fresh is not connection
    assert connection.is_closed()
    assert fresh.get_server_pid() != pid
    assert fresh.last_user == "b"
    assert await fresh.fetchval("SELECT 6 * 7") == 42
    assert recorded.hand_overs == []
    assert pool.snapshot() == numbers(1, 1, 1)
    await pool.release(fresh)


async def test_cancel_during_hand_over_reset_terminates_the_connection(
    pools: Pools, proxy: Proxy
) -> None:
    pool = pools.new(size=1, proxy=proxy)
    connection = await pool.acquire(user="a")
    link = proxy.links[-1]
    await pool.release(connection)
    link.mute = True  # the server stops answering: the reset hangs

    caller = asyncio.create_task(pool.acquire(user="b"))
    await until(lambda: not pool.idle and not caller.done(), "the reset is under way")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert connection.is_closed()
    await until(lambda: link.client_gone, "the client closed its socket")
    assert pool.snapshot() == numbers(1, 0, 0)
    await serves_exactly(pool, 1)


# --- which idle connection a caller gets ------------------------------------------------------


async def test_preferred_idle_connection_is_handed_out_unless_closed(pools: Pools) -> None:
    pool = pools.new(size=2)
    first, second = await pool.acquire(), await pool.acquire()
    await pool.release(first)
    await pool.release(second)  # most recently used: the default choice

    assert await pool.acquire(prefer=first) is first
    assert await pool.acquire() is second
    await pool.release(first)
    await pool.release(second)

    first.terminate()  # closed while idle: never handed out, dropped when met
    assert await pool.acquire(prefer=first) is second
    replacement = await pool.acquire()
    assert replacement is not first
    assert await replacement.fetchval("SELECT 1") == 1
    assert pool.snapshot() == numbers(2, 2, 2)
    await pool.release(second)
    await pool.release(replacement)


# --- connecting: when to retry, how fast, for how long ----------------------------------------


async def test_never_connected_pool_fails_at_once_without_retrying(
    pools: Pools, proxy: Proxy
) -> None:
    pool = pools.new(size=2, proxy=proxy)
    proxy.mode = "drop"
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.wait_for(pool.acquire(), BOUND)
    assert len(proxy.links) == 1
    assert not pool.ever_connected
    assert pool.snapshot() == numbers(2, 0, 0)
    proxy.mode = "forward"
    await serves_exactly(pool, 2)


async def test_reconnect_backs_off_and_the_waiting_caller_succeeds(
    pools: Pools, proxy: Proxy
) -> None:
    assert pool_module.RECONNECT_BACKOFF == (0.05, 0.1, 0.2, 0.5, 1.0)
    pool = pools.new(size=2, proxy=proxy)
    await connected_then_dropped(pool)
    start = len(proxy.links)
    proxy.mode = "drop"  # a server restart: every attempt is hung up on

    caller = asyncio.create_task(pool.acquire())
    await until(lambda: len(proxy.links) >= start + 4, "four attempts")
    proxy.mode = "forward"
    connection = await asyncio.wait_for(caller, BOUND)
    assert await connection.fetchval("SELECT 1") == 1

    attempts = proxy.accepted_since(start)
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert [link.mode for link in proxy.links[start : start + 4]] == ["drop"] * 4
    assert proxy.links[-1].mode == "forward"
    for gap, delay in zip(gaps[:3], (0.05, 0.1, 0.2), strict=True):
        assert delay - 0.005 <= gap < delay + 0.3, gaps
    await pool.release(connection)
    assert pool.snapshot() == numbers(2, 1, 0)


async def test_reconnect_gives_up_when_the_window_has_passed(
    pools: Pools, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = 0.3  # (15 s in production; the backoff steps are the real ones)
    monkeypatch.setattr(pool_module, "RECONNECT_WINDOW", window)
    pool = pools.new(size=2, proxy=proxy)
    await connected_then_dropped(pool)
    start = len(proxy.links)
    proxy.mode = "drop"

    started = time.monotonic()
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.wait_for(pool.acquire(), BOUND)
    elapsed = time.monotonic() - started

    attempts = [at - started for at in proxy.accepted_since(start)]
    # Nominally at 0, 0.05, 0.15, 0.35 s: every attempt but the last began inside the window,
    # and the last failure came after it.
    assert len(attempts) >= 3, attempts
    assert all(at <= window + 0.01 for at in attempts[:-1]), attempts
    assert window < elapsed < window + 0.5 + 0.5, elapsed
    assert pool.snapshot() == numbers(2, 0, 0)
    proxy.mode = "forward"
    await serves_exactly(pool, 2)


async def test_retire_stops_the_reconnect_loop_with_pool_retired(
    pools: Pools, proxy: Proxy
) -> None:
    pool = pools.new(size=2, proxy=proxy)
    await connected_then_dropped(pool)
    start = len(proxy.links)
    proxy.mode = "drop"
    caller = asyncio.create_task(pool.acquire())
    await until(lambda: len(proxy.links) >= start + 2, "two attempts")
    at_retire = len(proxy.links)
    await pool.retire()
    # PoolRetired, at once (the backoff is cut short): the service moves the call to the
    # link's new pool, which may reach the server where this one cannot.
    with pytest.raises(PoolRetired):
        await asyncio.wait_for(caller, 0.5)
    assert len(proxy.links) - at_retire <= 1  # at most the attempt already under way
    assert pool.snapshot() == numbers(2, 0, 0)


async def test_non_transient_connect_error_is_not_retried(
    pools: Pools, proxy: Proxy, postgres_server: Any, make_database: Callable[[], str]
) -> None:
    database = make_database()
    pool = pools.new(size=2, proxy=proxy, database=database)
    await connected_then_dropped(pool)
    owner = await asyncpg.connect(postgres_server.dsn(), ssl=False)
    try:
        await owner.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        start = len(proxy.links)
        with pytest.raises(
            asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
            match="is not currently accepting connections",
        ):
            await asyncio.wait_for(pool.acquire(), BOUND)
        assert len(proxy.links) == start + 1
        assert pool.snapshot() == numbers(2, 0, 0)
    finally:
        await owner.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await owner.close()
    await serves_exactly(pool, 2)
