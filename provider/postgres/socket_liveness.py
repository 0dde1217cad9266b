"""A database peer gone silent is noticed in seconds: TCP keepalive and TCP_USER_TIMEOUT.

A failover, an expired NAT entry or a partition drops packets without a reset; without a bound
a socket then waits for TCP's retransmission timeout (many minutes), and so does every call on
it. Each database socket gets keepalive probes after `KEEPALIVE_IDLE` seconds without traffic
and a user timeout of `SILENCE_BOUND`: a connection whose peer neither answers a probe nor
acknowledges what we sent for that long is dropped by the kernel, and its call fails with
ETIMEDOUT (`went_silent`). A peer that is merely slow (a long query) still acknowledges, so
nothing it does is cut short.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

SILENCE_BOUND = 5.0  # seconds a database server may leave us unanswered before we drop it
KEEPALIVE_IDLE = 2  # seconds without traffic before the first probe
KEEPALIVE_INTERVAL = 1  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes that end the connection (where no user timeout exists)


def bound_silence(transport: Any) -> None:
    """Set keepalive and the user timeout on the transport's TCP socket (not a unix socket)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),  # Linux (macOS: TCP_KEEPALIVE, below)
        ("TCP_KEEPALIVE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", int(SILENCE_BOUND * 1000)),  # Linux only, in milliseconds
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def went_silent(error: BaseException) -> bool:
    """The connection ended because its peer stopped answering (ETIMEDOUT), here or in the
    error's cause."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno == errno.ETIMEDOUT:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
