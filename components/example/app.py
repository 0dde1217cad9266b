"""The example guest component: a small but real workload through `wasmcloud:postgres`.

Built with componentize-py against `wit/` (see components/build.py). Exports `run` (called by
the host shim) and `wasi:http/incoming-handler@0.2.0` (so wasmCloud's own runtime can call the
same .wasm over HTTP). Module-level code runs at build time (componentize-py pre-initialises):
everything that touches the database happens inside the exported functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import struct
import time
from typing import Any

from componentize_py_types import Err, Ok
from wit_world import WitWorld as WitWorldProtocol
from wit_world import exports
from wit_world.imports import prepared, query

try:  # the `example` world imports transactions; `example-wash` (for wash 2.10) does not
    from wit_world.imports import transactions
except ImportError:  # pragma: no cover - only inside the example-wash component
    transactions = None  # type: ignore[assignment]
from wit_world.imports import wasmcloud_postgres_types as pg
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

MIGRATION = """
CREATE TABLE IF NOT EXISTS visits (
    id serial PRIMARY KEY,
    visitor text NOT NULL,
    pages int4 NOT NULL,
    score float8,
    tags text[],
    seen timestamptz NOT NULL DEFAULT now(),
    meta jsonb
);
TRUNCATE visits;
"""
VISITS = 20


def hashable_f64(value: float) -> tuple[int, int, int]:
    """(mantissa, exponent, sign) as Rust's f64::integer_decode."""
    bits = struct.unpack("<Q", struct.pack("<d", value))[0]
    sign = -1 if bits >> 63 else 1
    biased = (bits >> 52) & 0x7FF
    fraction = bits & ((1 << 52) - 1)
    mantissa = fraction << 1 if biased == 0 else fraction | (1 << 52)
    return mantissa, biased - 1075, sign


def plain(value: Any) -> Any:
    """A pg-value as JSON-friendly data: [case, payload]."""
    case = type(value).__name__.removeprefix("PgValue_")
    payload = getattr(value, "value", None)
    if case in ("Float8", "Double") and payload is not None:
        mantissa, exponent, sign = payload
        payload = sign * mantissa * 2.0**exponent
    elif isinstance(payload, bytes):
        payload = payload.hex()
    elif hasattr(payload, "__dict__"):
        payload = repr(payload)
    return [case, payload]


def error_text(error: Any) -> dict[str, Any]:
    variant = type(error).__name__.split("_", 1)[-1]
    inner = getattr(error, "value", None)
    if inner is not None and not isinstance(inner, str):  # exec's query-error(query-error)
        return {"variant": variant, "inner": error_text(inner)}
    return {"variant": variant, "message": inner}


def workload() -> dict[str, Any]:
    query.query_batch(MIGRATION)
    insert = prepared.prepare(
        "INSERT INTO visits (visitor, pages, score, tags, meta) VALUES ($1, $2, $3, $4, $5)"
    )
    written = 0
    for i in range(VISITS):
        written += prepared.exec(
            insert,
            [
                pg.PgValue_Text(f"visitor-{i}"),
                pg.PgValue_Int4(i),
                pg.PgValue_Float8(hashable_f64(i * 1.5)),
                pg.PgValue_TextArray(["regular" if i % 2 else "new", f"group-{i % 3}"]),
                pg.PgValue_Jsonb(json.dumps({"visit": i, "vip": i > 17})),
            ],
        )
    bump = prepared.prepare("UPDATE visits SET pages = pages + 1 WHERE pages >= $1")
    bumped = prepared.exec(bump, [pg.PgValue_Int4(15)])
    rows = query.query(
        "SELECT visitor, pages, score, tags, meta, pages >= $2 AS busy, $3::bool AS flag "
        "FROM visits WHERE pages >= $1 ORDER BY id",
        [pg.PgValue_Int4(16), pg.PgValue_Int8(19), pg.PgValue_Bool(True)],
    )
    summary: dict[str, Any] = {
        "written": written,
        "updated": bumped,
        "rows": [{entry.column_name: plain(entry.value) for entry in row} for row in rows],
    }
    try:
        query.query("SELECT * FROM no_such_table", [])
    except Err as failure:
        summary["error"] = error_text(failure.value)
    try:
        prepared.exec("pstmt-not-a-token", [])
    except Err as failure:
        summary["unknown_token"] = error_text(failure.value)
    return summary


BENCH_QUERY = (
    "SELECT g AS id, 'name ' || g AS name, g * 1.5 AS score, g % 2 = 0 AS even, "
    "now() AS at FROM generate_series(1, 10) AS g"
)


BENCH_INSERT = "INSERT INTO bench_items (name, qty) VALUES ($1, $2)"


def bench(kind: str, n: int) -> int:
    """`n` import calls of one kind, timed inside the guest (what a guest really waits).

    `insert`: the fair benchmark's hot INSERT (its table must exist), so wash's plugin and our
    provider run the same statement on the same database."""
    if kind == "insert":
        token = prepared.prepare(BENCH_INSERT)
        started = time.perf_counter_ns()
        for i in range(n):
            prepared.exec(token, [pg.PgValue_Text(f"item {i}"), pg.PgValue_Int4(i)])
    elif kind == "exec":
        token = prepared.prepare("SELECT $1::int4")
        params = [pg.PgValue_Int4(1)]
        started = time.perf_counter_ns()
        for _ in range(n):
            prepared.exec(token, params)
    else:
        started = time.perf_counter_ns()
        for _ in range(n):
            query.query(BENCH_QUERY, [])
    return time.perf_counter_ns() - started


# --- conformance cases: self-describing JSON <-> the bindings' classes ----------------------------
#
# A value travels as plain JSON where it can, else tagged: {"v": "PgValue_Int4", "value": ...}
# for a variant case, {"r": "Time", "f": {...}} for a record, {"t": [...]} for a tuple,
# {"b": "<hex>"} for bytes, {"e": "LexemeWeight", "n": "A"} for an enum. The host side
# (tests/e2e/conformance/guest_json.py) writes and reads it from the WIT types.


def from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "v" in value:
        cls = getattr(pg, value["v"])
        return cls(from_json(value["value"])) if "value" in value else cls()
    if "r" in value:
        return getattr(pg, value["r"])(**{k: from_json(v) for k, v in value["f"].items()})
    if "t" in value:
        return tuple(from_json(item) for item in value["t"])
    if "b" in value:
        return bytes.fromhex(value["b"])
    if "e" in value:
        return getattr(getattr(pg, value["e"]), value["n"])
    raise ValueError(f"unknown tagged value {value!r}")


def to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return {"e": type(value).__name__, "n": value.name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        fields = [f.name for f in dataclasses.fields(value)]
        if "_" in name:  # a variant case class: Type_Case
            return {"v": name, "value": to_json(value.value)} if fields else {"v": name}
        return {"r": name, "f": {f: to_json(getattr(value, f)) for f in fields}}
    if isinstance(value, tuple):
        return {"t": [to_json(item) for item in value]}
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


def conform(request: str) -> str:
    """One case: {"mode": "query"|"exec"|"batch"|"prepare", "sql": ..., "params": [...]}."""
    case = json.loads(request)
    params = from_json(case.get("params", []))
    try:
        if case["mode"] == "query":
            rows = query.query(case["sql"], params)
            result: Any = [[[e.column_name, to_json(e.value)] for e in row] for row in rows]
        elif case["mode"] == "batch":
            query.query_batch(case["sql"])
            result = None
        elif case["mode"] == "prepare":
            prepared.prepare(case["sql"])
            result = None
        else:
            token = case.get("token") or prepared.prepare(case["sql"])
            result = prepared.exec(token, params)
    except Err as failure:
        return json.dumps({"err": to_json(failure.value)})
    return json.dumps({"ok": result})


BANK_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (id int4 PRIMARY KEY, balance int8 NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
    id bigserial PRIMARY KEY, from_account int4, to_account int4, amount int8,
    at timestamptz DEFAULT now()
);
INSERT INTO accounts VALUES (1, 100), (2, 100) ON CONFLICT DO NOTHING;
"""
MAX_ATTEMPTS = 10


def transfer(from_account: int, to_account: int, amount: int) -> str:
    """Read, decide, write: atomically, or not at all (see the world's doc)."""
    query.query_batch(BANK_SCHEMA)
    options = transactions.TransactionOptions(transactions.IsolationLevel.SERIALIZABLE, False)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            tx = transactions.begin(options)
        except Err as failure:  # too many open transactions on the link, no database, ...
            return json.dumps({"committed": False, "attempts": attempt,
                               "error": error_text(failure.value)})  # fmt: skip
        try:
            rows = transactions.query(
                tx, "SELECT balance FROM accounts WHERE id = $1", [pg.PgValue_Int4(from_account)]
            )
            balance = rows[0][0].value.value if rows else 0  # PgValue_Int8(balance)
            if balance < amount:
                transactions.rollback(tx)
                return json.dumps({"committed": False, "attempts": attempt,
                                   "reason": f"balance {balance} < {amount}"})  # fmt: skip
            for account, change in ((from_account, -amount), (to_account, amount)):
                transactions.query(
                    tx, "UPDATE accounts SET balance = balance + $2 WHERE id = $1",
                    [pg.PgValue_Int4(account), pg.PgValue_Int8(change)],
                )  # fmt: skip
            transactions.query(
                tx, "INSERT INTO transfers (from_account, to_account, amount) VALUES ($1, $2, $3)",
                [pg.PgValue_Int4(from_account), pg.PgValue_Int4(to_account),
                 pg.PgValue_Int8(amount)],
            )  # fmt: skip
            transactions.commit(tx)
            return json.dumps({"committed": True, "attempts": attempt})
        except Err as failure:
            error = failure.value
            if isinstance(error, transactions.TransactionError_SerializationFailure):
                continue  # rolled back by the provider: run it again from `begin`
            with contextlib.suppress(Err):
                transactions.rollback(tx)
            return json.dumps({"committed": False, "attempts": attempt,
                               "error": error_text(error)})  # fmt: skip
    return json.dumps({"committed": False, "attempts": MAX_ATTEMPTS, "reason": "retries ran out"})


class WitWorld(WitWorldProtocol):
    def transfer(self, from_account: int, to_account: int, amount: int) -> str:
        return transfer(from_account, to_account, amount)

    def run(self) -> str:
        return json.dumps(workload(), sort_keys=True)

    def bench(self, kind: str, n: int) -> int:
        return bench(kind, n)

    def conform(self, request: str) -> str:
        return conform(request)


def read_body(request: IncomingRequest) -> str:
    chunks = []
    incoming = request.consume()
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err:  # the stream's end (stream-error::closed)
                break
    return b"".join(chunks).decode()


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            path = request.path_with_query() or "/"
            if path == "/conform":
                status, body = 200, conform(read_body(request)).encode()
            elif path.startswith("/bench/"):  # /bench/<kind>/<n>: nanoseconds for n calls
                _, _, kind, count = path.split("/", 3)
                status, body = 200, json.dumps({"ns": bench(kind, int(count))}).encode()
            else:
                status, body = 200, json.dumps(workload(), sort_keys=True).encode()
        except Err as failure:
            status, body = 500, json.dumps(error_text(failure.value)).encode()
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(status)
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with outgoing.write() as stream:
            for start in range(0, len(body), 4096):  # the stream takes at most 4096 per write
                stream.blocking_write_and_flush(body[start : start + 4096])
        OutgoingBody.finish(outgoing, None)
