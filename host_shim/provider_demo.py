"""`make demo`: the provider end to end, driven the way a wasmCloud host drives it.

Starts NATS and PostgreSQL (the configured ones when `NATS_URL` / `DATABASE_URL` answer, else
local ones from the wheels or the machine), launches `python -m provider` with HostData on
stdin, puts a link carrying the database settings (the password sealed as a secret), and then
calls the four functions over wRPC as a component's imports would: query-batch creates a table,
prepare + exec insert rows, query reads them back. Finally it asks the provider to shut down.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from typing import Any

import nats

from devkit.local_nats import running_nats
from devkit.local_postgres import PostgresServer, running_postgres
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.wit.model import postgres_package
from provider.wit.values import Case, Err
from provider.wrpc.client import WrpcClient


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def show(value: Case) -> str:
    if value.tag == "null":
        return "NULL"
    if value.tag == "timestamp-tz":
        stamp = value.value["timestamp"]
        year, month, day = stamp["date"].value
        clock = stamp["time"]
        return f"{year:04d}-{month:02d}-{day:02d} {clock['hour']:02d}:{clock['min']:02d}"
    if value.tag == "float8":
        from provider.postgres.values.text import float_from_hashable_f64

        return repr(float_from_hashable_f64(value.value))
    return str(value.value)


def expect_ok(what: str, result: Any) -> Any:
    if isinstance(result, Err):
        raise SystemExit(f"{what} failed: {result.value}")
    return result.value


async def run(nats_url: str, server: PostgresServer, log_path: str) -> None:
    package = postgres_package()
    query, batch = package.function("query", "query"), package.function("query", "query-batch")
    prepare, exec_ = package.function("prepared", "prepare"), package.function("prepared", "exec")
    database = await server.create_database("demo")
    step(f"database {database} on the {server.kind} PostgreSQL at {server.host}:{server.port}")

    host = LatticeHost(nats_url, lattice="demo")
    with open(log_path, "wb") as log_file:
        provider = ProviderProcess(host, log_file=log_file)
        step("starting the provider as a host does (HostData on stdin, cleared environment)")
        started = time.perf_counter()
        provider.start()
        nc = await nats.connect(nats_url)
        try:
            health = await provider.wait_healthy(nc)
            step(f"provider healthy after {time.perf_counter() - started:.2f} s: {health}")
            config = server.link_config(database)
            password = config.pop("POSTGRES_PASSWORD")
            component = "demo-component"
            definition = host.link_definition(
                component, config, secrets={"POSTGRES_PASSWORD": password}
            )
            await host.put_link(nc, definition)
            step(f"link put: {component} -> {host.provider_id} (password sealed as a secret)")

            client = WrpcClient(nc, host.prefix, result_timeout=30)
            await client.start()
            headers = {"source-id": component, "link-name": "default"}

            async def call(function: Any, *args: Any) -> Any:
                for _ in range(50):  # the link put is asynchronous: wait until it is applied
                    (result,) = await client.call(function, list(args), headers)
                    if not (isinstance(result, Err) and "no link" in str(result.value.value)):
                        return result
                    await asyncio.sleep(0.05)
                return result

            expect_ok(
                "query-batch",
                await call(
                    batch,
                    "CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, "
                    "qty int4 NOT NULL, price numeric(10,2), placed timestamptz DEFAULT now());",
                ),
            )
            step("query-batch: created table orders")
            token = expect_ok(
                "prepare",
                await call(prepare, "INSERT INTO orders (item, qty, price) VALUES ($1, $2, $3)"),
            )
            step(f"prepare: token {token[:14]}…")
            for item, qty, price in (
                ("apple", 3, "0.50"),
                ("pear", 1, "0.75"),
                ("fig", 12, "2.10"),
            ):
                args = [Case("text", item), Case("int4", qty), Case("numeric", price)]
                affected = expect_ok("exec", await call(exec_, token, args))
                step(f"exec: inserted {item!r} ({affected} row)")
            rows = expect_ok(
                "query",
                await call(
                    query,
                    "SELECT id, item, qty, price, qty * price AS total, placed FROM orders "
                    "WHERE qty >= $1 ORDER BY id",
                    [Case("int4", 1)],
                ),
            )
            step(f"query: {len(rows)} rows")
            names = [entry["column-name"] for entry in rows[0]]
            table = [names] + [[show(entry["value"]) for entry in row] for row in rows]
            widths = [max(len(r[i]) for r in table) for i in range(len(names))]
            for index, row in enumerate(table):
                print(
                    "    "
                    + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                )
                if index == 0:
                    print("    " + "  ".join("-" * width for width in widths))
            error = await call(query, "SELECT * FROM no_such_table", [])
            variant, text = error.value.tag, error.value.value
            step(f"an error reaches the caller as a typed variant: {variant}: {text}")
            await client.close()

            started = time.perf_counter()
            reply = await host.shutdown(nc)
            elapsed_ms = (time.perf_counter() - started) * 1000
            step(f"shutdown: {reply.decode()!r} after {elapsed_ms:.0f} ms")
            code = provider.wait_exit()
            step(f"provider exited with {code}")
        finally:
            provider.kill()
            await nc.close()


def main() -> int:
    step("starting NATS")
    with running_nats() as nats_url:
        step(f"NATS at {nats_url}")
        step("starting PostgreSQL")
        with running_postgres() as server:
            log_path = tempfile.mkstemp(prefix="provider-demo-", suffix=".log")[1]
            try:
                asyncio.run(run(nats_url, server, log_path))
            except BaseException:
                print(f"provider log ({log_path}):", file=sys.stderr)
                with open(log_path, errors="replace") as log:
                    sys.stderr.write(log.read()[-4000:])
                raise
    step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
