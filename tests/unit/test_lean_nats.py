"""The benchmark's load generator speaks the provider's own NATS protocol module."""

from __future__ import annotations

import json

from bench.lean_nats import connect_line


def test_the_connect_line_asks_for_headers_and_no_responders() -> None:
    line, ping = connect_line("bench").split(b"\r\n", 1)
    assert line.startswith(b"CONNECT ") and ping == b"PING\r\n"
    options = json.loads(line[len(b"CONNECT ") :])
    assert options["headers"] is True and options["no_responders"] is True
    assert options["verbose"] is False and options["name"] == "bench"
