"""subscriptions_live: the PONG it waits for comes after the SUBs (nats-py's flush alone, not)."""

from __future__ import annotations

from typing import Any

import nats

from provider.nats.live_subscriptions import subscriptions_live


def record_writes(nc: Any) -> list[bytes]:
    """Everything nats-py writes to its socket from now on, in order (SUB lines via the flusher's
    `writelines`, PING via `write`)."""
    transport = nc._transport
    written: list[bytes] = []
    write, writelines = transport.write, transport.writelines

    def recorded_write(data: bytes) -> None:
        written.append(bytes(data))
        write(data)

    def recorded_writelines(lines: list[bytes]) -> None:
        written.extend(bytes(line) for line in lines)
        writelines(lines)

    transport.write, transport.writelines = recorded_write, recorded_writelines
    return written


def order(written: list[bytes]) -> list[str]:
    return [line.split(b" ", 1)[0].strip().decode() for line in written]


async def test_the_subs_are_written_before_the_ping_that_proves_them(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        written = record_writes(nc)
        await nc.subscribe("live.a")
        await nc.subscribe("live.b")
        await subscriptions_live(nc)
        assert order(written) == ["SUB", "SUB", "PING"]
    finally:
        await nc.close()


async def test_nats_py_flush_alone_can_ping_before_its_sub(nats_url: str) -> None:
    """Why the module exists: if nats-py ever writes SUBs before flush's PING, this fails and
    `subscriptions_live` can become a plain flush."""
    nc = await nats.connect(nats_url)
    try:
        written = record_writes(nc)
        await nc.subscribe("live.c")
        await nc.flush()
        assert order(written)[0] == "PING"
    finally:
        await nc.close()
