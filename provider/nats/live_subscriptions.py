"""Wait until this connection's subscriptions are live at the server.

nats-py (2.x) buffers a SUB for its flusher task, but `flush()` writes its PING straight to the
socket: the PONG can come back before the server has the SUB, and a message published by
another connection in that gap finds no subscriber and is dropped (seen here: 1 run in 25 lost
the first message). Writing the buffered commands first, then flushing, makes the PONG prove
the SUBs arrived. Our own data connection writes in order, so `flush()` alone does.
"""

from __future__ import annotations

from typing import Any


async def subscriptions_live(nc: Any) -> None:
    """Return once every subscription made on `nc` so far is live at the server."""
    write_buffered = getattr(nc, "_flush_pending", None)  # nats-py's buffered-command flush
    if write_buffered is not None:
        await write_buffered(force_flush=True)
    await nc.flush()
