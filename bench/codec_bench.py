"""Codec speed: encode + decode of a `query` result with 10 rows x 5 columns (µs per call).

Reports wall and CPU time per call, and, as the reference the issue asks for, the same result
shaped as plain Python tuples packed by msgpack (a well-tuned C serializer) on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgpack

from provider.wit.codec import Codec
from provider.wit.model import postgres_package
from provider.wit.values import Case, Ok


def sample_result() -> Ok:
    rows = []
    for i in range(10):
        rows.append(
            [
                {"column-name": "id", "value": Case("int8", 1_000_000 + i)},
                {"column-name": "name", "value": Case("text", f"customer number {i}")},
                {"column-name": "balance", "value": Case("numeric", f"{i * 1234.5:.2f}")},
                {"column-name": "active", "value": Case("bool", i % 2 == 0)},
                {"column-name": "score", "value": Case("float8", (6755399441055744, -52, 1))},
            ]
        )
    return Ok(rows)


def measure(label: str, work: Callable[[], object], calls: int) -> tuple[float, float]:
    for _ in range(calls // 10):
        work()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        work()
    wall_us = (time.perf_counter() - wall) / calls * 1e6
    cpu_us = (time.process_time() - cpu) / calls * 1e6
    print(f"{label:<44} {wall_us:8.1f} µs wall {cpu_us:8.1f} µs CPU per call")
    return wall_us, cpu_us


def main(calls: int = 5000) -> None:
    codec = Codec()
    results = postgres_package().function("query", "query").results
    value = sample_result()
    encoded = codec.encode_values(results, [value])
    assert codec.decode_values(results, encoded) == (value,)
    print(f"10 rows x 5 columns: {len(encoded)} bytes on the wire; {calls} calls each")
    encode_us, _ = measure("encode", lambda: codec.encode_values(results, [value]), calls)
    decode_us, _ = measure("decode", lambda: codec.decode_values(results, encoded), calls)
    both_us, _ = measure(
        "encode + decode",
        lambda: codec.decode_values(results, codec.encode_values(results, [value])),
        calls,
    )
    plain = [[(e["column-name"], e["value"].tag, e["value"].value) for e in r] for r in value.value]
    packed = msgpack.packb(plain)
    reference_us, _ = measure(
        "reference: msgpack pack + unpack (C)",
        lambda: msgpack.unpackb(msgpack.packb(plain)),
        calls,
    )
    print(f"packed size {len(packed)} bytes; ours / msgpack = {both_us / reference_us:.1f}x")
    del encode_us, decode_us


if __name__ == "__main__":
    main()
