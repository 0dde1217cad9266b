"""No link put or delete lost while the provider starts: the lattice is asked once subscribed.

The provider process runs as a host runs it; a control-interface responder on the lattice plays
the hosts' `link.get` (the real 1.9 host is in `make lattice-test`).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from devkit.local_nats import restartable_nats
from devkit.provider_harness import Caller
from host_shim.control_interface import ControlInterface, control_reply, serve_control
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider.lattice.link_reconciliation import (
    RestartMemo,
    config_get_subject,
    config_values,
    differences,
    lattice_links,
    link_get_subject,
    plain_config_names,
    resolved_link,
)
from provider.wit.values import Case, Err, Ok
from provider.wrpc.client import CallTimeout, WrpcClient


def _link(source: str, target: str = "sqldb-postgres", name: str | None = None) -> dict[str, Any]:
    link = {"source_id": source, "target": target, "wit_namespace": "wasmcloud",
            "wit_package": "postgres", "interfaces": ["query"], "source_config": [],
            "target_config": ["cfg"]}  # fmt: skip
    if name is not None:
        link["name"] = name
    return link


def _reply(links: list[dict[str, Any]]) -> bytes:
    return control_reply(links)


def test_a_link_get_reply_names_the_links_targeting_us() -> None:
    reply = _reply([_link("a"), _link("b", name="other"), _link("c", target="someone-else")])
    assert set(lattice_links(reply, "sqldb-postgres") or {}) == {("a", "default"), ("b", "other")}
    assert lattice_links(b"not json", "p") is None
    assert lattice_links(b'{"success": false, "message": "no"}', "p") is None
    assert lattice_links(b'{"success": true, "response": {}}', "p") is None
    assert link_get_subject("lat") == "wasmbus.ctl.v1.lat.link.get"


def test_a_missed_link_without_secrets_is_resolved_from_its_configs() -> None:
    link = {**_link("a"), "target_config": ["base", "override"]}
    assert plain_config_names(link) == ["base", "override"]
    assert plain_config_names({**link, "target_config": ["base", "SECRET_pw"]}) is None
    assert plain_config_names({**link, "target_config": "base"}) is None
    found = b'{"success": true, "message": "", "response": {"A": "1", "B": "2"}}'
    assert config_values(found) == {"A": "1", "B": "2"}
    assert config_values(b'{"success": true, "message": "Configuration not found"}') is None
    resolved = resolved_link(link, [{"A": "1", "B": "2"}, {"B": "3"}])
    assert resolved["target_config"] == {"A": "1", "B": "3"}  # later configs win
    assert resolved["target_secrets"] is None and resolved["source_id"] == "a"
    assert config_get_subject("lat", "base") == "wasmbus.ctl.v1.lat.config.get.base"


def test_differences_never_count_what_changed_since_asking() -> None:
    found = differences(
        lattice={("a", "default"), ("new", "default"), ("put-meanwhile", "default")},
        ours_now={
            ("a", "default"),
            ("old", "default"),
            ("put-meanwhile", "default"),
            ("deleted-meanwhile-then-put", "default"),
        },
        ours_when_asked={("a", "default"), ("old", "default"), ("re-put", "default")},
        changed_since_asked={("re-put", "default"), ("put-meanwhile", "default")},
    )
    assert found.missing == {("new", "default")}
    assert found.gone == {("old", "default")}  # "re-put" changed since: left alone


def test_the_restart_memo_allows_one_restart_per_set_of_links(tmp_path: Path) -> None:
    memo = RestartMemo(f"lattice-{time.time_ns()}", "p", "h")
    missing = frozenset({("a", "default")})
    assert not memo.already_restarted_for(missing)
    memo.remember(missing)
    assert memo.already_restarted_for(missing)
    assert not memo.already_restarted_for(missing | {("b", "default")})
    memo.path.unlink()


def _control(host: LatticeHost, links: list[dict[str, Any]],
             configs: dict[str, dict[str, str]] | None = None) -> ControlInterface:  # fmt: skip
    """The hosts' answers to `link.get` and `config.get` (their link maps and config store)."""
    return ControlInterface(host.lattice, lambda: links,
                            None if configs is None else configs.get)  # fmt: skip


def _log_path() -> Path:
    return Path(tempfile.mkstemp(prefix="provider-", suffix=".log")[1])


async def _exit_code(process: ProviderProcess, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    assert process.process is not None
    while time.monotonic() < deadline:
        if process.process.poll() is not None:
            return process.process.returncode
        await asyncio.sleep(0.05)
    return None


async def _exits_for_a_restart(host: LatticeHost, log_file: Any) -> None:
    """A provider started without a link the lattice holds exits (the host restarts it)."""
    first = ProviderProcess(host, log_file=log_file)
    first.start()  # HostData without the link: its put went out before it listened
    assert await _exit_code(first, 20) == 1


async def test_a_link_put_before_the_provider_listened_comes_back_through_a_restart(
    host: LatticeHost, nats_url: str, postgres_server: Any, database: str
) -> None:
    missed = host.link_definition("app-missed", postgres_server.link_config(database))
    control = _control(host, [_link("app-missed", host.provider_id)])
    nc = await nats.connect(nats_url)
    log_path = _log_path()
    try:
        await control.serve(nc)
        with open(log_path, "wb") as log_file:
            await _exits_for_a_restart(host, log_file)
        assert "links were put while this provider started (app-missed (default))" in (
            log_path.read_text()
        )
        # The host restarts it, the link now in HostData: it serves and stays up.
        second = ProviderProcess(host, link_definitions=[missed])
        second.start()
        try:
            await second.wait_healthy(nc)
            client = WrpcClient(nc, host.prefix, result_timeout=10)
            await client.start()
            rows = await Caller(client, "app-missed").query("SELECT 1")
            assert isinstance(rows, Ok), rows
            assert await _exit_code(second, 4.5) is None  # both comparisons passed
            assert control.asked >= 3
            await client.close()
        finally:
            second.kill()
    finally:
        await nc.close()


async def test_a_missed_link_without_secrets_is_applied_from_its_configs_without_a_restart(
    nats_url: str, postgres_server: Any, database: str
) -> None:
    host = LatticeHost(nats_url)
    config = postgres_server.link_config(database)
    first, second = dict(list(config.items())[:2]), dict(list(config.items())[2:])
    link = {**_link("app-plain", host.provider_id), "target_config": ["first", "second"]}
    control = _control(host, [link], configs={"first": first, "second": second})
    nc = await nats.connect(nats_url)
    process = ProviderProcess(host)
    try:
        await control.serve(nc)
        process.start()
        await process.wait_healthy(nc)
        client = WrpcClient(nc, host.prefix, result_timeout=10)
        await client.start()
        caller = Caller(client, "app-plain")
        for _ in range(100):
            rows = await caller.query("SELECT 1")
            if isinstance(rows, Ok):
                break
            await asyncio.sleep(0.05)
        assert isinstance(rows, Ok), rows
        assert await _exit_code(process, 4) is None  # no restart was needed
        await client.close()
    finally:
        process.kill()
        await nc.close()


async def test_a_link_the_host_cannot_hand_over_costs_one_restart_only(
    host: LatticeHost, nats_url: str
) -> None:
    control = _control(host, [_link("app-unresolvable", host.provider_id)])
    nc = await nats.connect(nats_url)
    log_path = _log_path()
    try:
        await control.serve(nc)
        with open(log_path, "wb") as log_file:
            await _exits_for_a_restart(host, log_file)
            second = ProviderProcess(host, log_file=log_file)  # still without it
            second.start()
            try:
                await second.wait_healthy(nc)
                assert await _exit_code(second, 4.5) is None
            finally:
                second.kill()
        assert "were not handed over, even after a restart" in log_path.read_text()
    finally:
        await nc.close()


async def test_a_link_deleted_before_the_provider_listened_is_deleted(
    nats_url: str, postgres_server: Any, database: str
) -> None:
    host = LatticeHost(nats_url)
    config = postgres_server.link_config(database)
    kept, deleted = (host.link_definition(s, config) for s in ("app-kept", "app-deleted"))
    control = _control(host, [_link("app-kept", host.provider_id)])
    nc = await nats.connect(nats_url)
    try:
        await control.serve(nc)
        process = ProviderProcess(host, link_definitions=[kept, deleted])
        process.start()
        try:
            await process.wait_healthy(nc)
            client = WrpcClient(nc, host.prefix, result_timeout=10)
            await client.start()
            gone = Caller(client, "app-deleted")
            for _ in range(100):
                result = await gone.query("SELECT 1")
                if isinstance(result, Err):
                    break
                await asyncio.sleep(0.05)
            assert result == Err(
                Case("unexpected", "no link from source 'app-deleted' to this provider")
            )
            assert isinstance(await Caller(client, "app-kept").query("SELECT 1"), Ok)
            await client.close()
        finally:
            process.kill()
    finally:
        await nc.close()


async def test_a_secret_that_is_not_utf8_refuses_the_link_and_the_guest_hears_why(
    nats_url: str, postgres_server: Any, database: str
) -> None:
    host = LatticeHost(nats_url)
    definition = host.link_definition("app-binary", postgres_server.link_config(database))
    document = {"POSTGRES_PASSWORD": {"kind": "Bytes", "value": [0xFF, 0xFE, 0x00]}}
    definition["target_secrets"] = list(
        host.host_keys.seal(json.dumps(document).encode(), host.provider_keys.public_key)
    )
    nc = await nats.connect(nats_url)
    process = ProviderProcess(host)
    process.start()
    try:
        await process.wait_healthy(nc)
        await host.put_link(nc, definition)
        client = WrpcClient(nc, host.prefix, result_timeout=10)
        await client.start()
        caller = Caller(client, "app-binary")
        for _ in range(100):
            result = await caller.query("SELECT 1")
            if "refused" in str(result):
                break
            await asyncio.sleep(0.05)
        assert result == Err(
            Case(
                "unexpected",
                "the link from app-binary was refused: a Bytes secret is not UTF-8 text",
            )
        )
        health = await host.health(nc)
        assert health["healthy"] is False and "not UTF-8" in health["message"]
        await client.close()
    finally:
        process.kill()
        await nc.close()


async def _until(check: Any, seconds: float = 30.0) -> Any:
    """`check()`'s first truthy result, polled until `seconds` pass (then the last one); a
    call that times out (the provider still reconnecting) counts as falsy."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = await check()
        except CallTimeout:
            result = None
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


NO_OLD_LINK = "no link from source 'app-old' to this provider"


async def test_links_put_or_deleted_while_the_lattice_was_down_are_caught_up(
    postgres_server: Any, database: str
) -> None:
    """NATS delivers nothing published while a subscriber is away: after an outage the
    provider asks the hosts again. The outage here is a NATS restart; the put and delete
    'published' during it are made on the host's side only (what a lost message looks like)."""
    config = postgres_server.link_config(database)
    log_path = _log_path()
    with restartable_nats() as server, open(log_path, "wb") as log_file:
        host = LatticeHost(server.url)
        kept, old = (host.link_definition(s, config) for s in ("app-kept", "app-old"))
        host.links.update({("app-kept", "default"): kept, ("app-old", "default"): old})
        process = ProviderProcess(host, log_file=log_file, link_definitions=[kept, old])
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        try:
            await serve_control(nc, host)
            process.start()
            await process.wait_healthy(nc)
            client = WrpcClient(nc, host.prefix, result_timeout=10)
            await client.start()
            assert isinstance(await Caller(client, "app-old").query("SELECT 1"), Ok)

            server.stop()
            del host.links[("app-old", "default")]  # the delete and the put, lost to it
            host.links[("app-new", "default")] = host.link_definition("app-new", config)
            server.start()

            async def new_link_answers() -> bool:
                return isinstance(await Caller(client, "app-new").query("SELECT 1"), Ok)

            async def old_link_is_gone() -> bool:
                result = await Caller(client, "app-old").query("SELECT 1")
                return result == Err(Case("unexpected", NO_OLD_LINK))

            assert await _until(new_link_answers)
            assert await _until(old_link_is_gone)
            assert isinstance(await Caller(client, "app-kept").query("SELECT 1"), Ok)
            assert process.process is not None and process.process.poll() is None
            await client.close()
        finally:
            process.kill()
            await nc.close()
    logged = log_path.read_text()
    assert "link deleted while the lattice connection was down" in logged
    assert "link put while the lattice connection was down, applied from its config" in logged
