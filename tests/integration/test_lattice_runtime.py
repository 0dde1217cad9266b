"""The provider SDK runtime (`provider.lattice.runtime`) in-process, against a real nats-server.

A host is played by `LatticeHost` (the subjects and payloads a wasmCloud 1.x host publishes);
the business layer is `RecordingHooks`, a test double of `ProviderHooks` (the SDK's plug-in
point) that records every call in order. Nothing of NATS is mocked.

Each put subject (the provider id's and the xkey's) and the delete subject is one subscription,
whose messages the runtime handles one after the other; `barrier` publishes a marker on each of
them and waits for all three, so everything published before it has been handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import pytest

from devkit.local_nats import free_port
from host_shim.control_interface import ControlInterface, control_reply
from host_shim.provider_process import LatticeHost
from provider.lattice.host_data import HostData
from provider.lattice.lattice_connection import LatticeUnavailable
from provider.lattice.link_reconciliation import RestartMemo, link_get_subject
from provider.lattice.links import LinkDefinition, seal_secrets
from provider.lattice.runtime import FLUSH_BUDGET, ProviderRuntime
from provider.lattice.services import LatticeServices
from provider.lattice.xkeys import CurveKeyPair
from provider.wrpc.server import CallObserver, Export
from tests.waiting import until

RUNTIME_LOG = "provider.lattice.runtime"
MARKER = "marker-"  # source ids of `barrier`'s links: kept out of `RecordingHooks.calls`
NO_XKEYS = "the link carries secrets but the host gave no xkeys to open them"

Call = tuple[Any, ...]


class RecordingHooks:
    """`ProviderHooks` as a test double: every call recorded in order in `calls`; `links` is
    the state a business layer would hold (put sets, delete and refuse drop)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.links: dict[tuple[str, str], dict[str, str]] = {}
        self.markers: set[str] = set()
        self.attached: list[LatticeServices] = []
        self.call_observer: CallObserver | None = None
        self.replica_id = "0123456789ab"
        self.health_checks = 0
        self.health_result: tuple[bool, str] | Exception = (True, "ok")
        self.attach_gate: asyncio.Event | None = None
        self.put_gates: dict[str, asyncio.Event] = {}
        self.put_errors: dict[str, Exception] = {}
        self.config_errors: list[Exception] = []
        self.shutdown_delay = 0.0

    def exports(self) -> Sequence[Export]:
        return []

    def replica_exports(self) -> Sequence[Export]:
        return []

    async def attach(self, services: LatticeServices) -> None:
        self.attached.append(services)
        self.calls.append(("attach",))
        if self.attach_gate is not None:
            await self.attach_gate.wait()

    async def put_link(self, link: LinkDefinition, values: dict[str, str]) -> None:
        if link.source_id.startswith(MARKER):
            self.markers.add(link.source_id)
            return
        self.calls.append(("put", link.source_id, link.name, values))
        gate = self.put_gates.get(link.source_id)
        if gate is not None:
            await gate.wait()
        error = self.put_errors.get(link.source_id)
        if error is not None:
            raise error
        self.links[(link.source_id, link.name)] = values

    async def delete_link(self, link: LinkDefinition) -> None:
        if link.source_id.startswith(MARKER):
            self.markers.add(link.source_id)
            return
        self.calls.append(("delete", link))
        self.links.pop((link.source_id, link.name), None)

    async def refuse_link(self, link: LinkDefinition, reason: str) -> None:
        self.calls.append(("refuse", link.source_id, link.name, reason))
        self.links.pop((link.source_id, link.name), None)

    async def health(self) -> tuple[bool, str]:
        self.health_checks += 1
        if isinstance(self.health_result, Exception):
            raise self.health_result
        return self.health_result

    async def config_update(self, config: dict[str, str]) -> None:
        self.calls.append(("config", config))
        if self.config_errors:
            raise self.config_errors.pop(0)

    async def shutdown(self) -> None:
        self.calls.append(("shutdown",))
        await asyncio.sleep(self.shutdown_delay)

    async def flush(self, timeout: float) -> None:
        self.calls.append(("flush", timeout))

    def after_attach(self) -> list[Call]:
        assert self.calls[:1] == [("attach",)], self.calls
        return self.calls[1:]


def put_subjects(host: LatticeHost) -> list[str]:
    return [
        host.subject(host.provider_keys.public_key, "linkdefs.put"),
        host.subject(host.provider_id, "linkdefs.put"),
    ]


async def publish_json(nc: Any, subject: str, document: Any) -> None:
    await nc.publish(subject, json.dumps(document).encode())


async def barrier(host: LatticeHost, nc: Any, hooks: RecordingHooks) -> None:
    """Everything published before this on the put and delete subjects has been handled
    (the runtime must have a usable xkey: else the xkey subject is not subscribed)."""
    tag = uuid.uuid4().hex[:8]
    on_xkey, on_id, on_delete = (f"{MARKER}{kind}-{tag}" for kind in ("xkey", "id", "delete"))
    xkey_subject, id_subject = put_subjects(host)
    await publish_json(nc, xkey_subject, host.link_definition(on_xkey, {}))
    await publish_json(nc, id_subject, host.link_definition(on_id, {}))
    await publish_json(nc, host.subject(host.provider_id, "linkdefs.del"),
                       host.link_definition(on_delete, {}))  # fmt: skip
    await nc.flush()
    await until(lambda: {on_xkey, on_id, on_delete} <= hooks.markers, "the barrier's markers")


async def wait_until_serving(host: LatticeHost, nc: Any, task: asyncio.Task[None]) -> None:
    """Until health answers (the lifecycle subjects are subscribed last in `start`)."""
    deadline = time.monotonic() + 10
    while True:
        if task.done():
            task.result()  # raises what run() raised
            raise AssertionError("run() returned before serving")
        try:
            await host.health(nc, timeout=0.5)
            return
        except (TimeoutError, nats.errors.Error):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


@dataclass
class Served:
    runtime: ProviderRuntime
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def serving(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, **host_data: Any
) -> AsyncIterator[Served]:
    """`run()` as the provider's main does, until `stop()` (or the host's shutdown)."""
    runtime = ProviderRuntime(host.host_data(**host_data), hooks)
    task = asyncio.create_task(runtime.run())
    try:
        await wait_until_serving(host, nc, task)
        yield Served(runtime, task)
    finally:
        await runtime.stop()
        await asyncio.wait_for(task, 5)


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == RUNTIME_LOG and r.getMessage() == message]


@pytest.fixture
def hooks() -> RecordingHooks:
    return RecordingHooks()


# --- start ----------------------------------------------------------------------------------


async def test_links_arriving_while_starting_wait_for_the_host_data_links(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    initial = host.link_definition("app-initial", {"DB": "initial"})
    other_target = {**host.link_definition("app-other", {"DB": "x"}), "target": "another-provider"}
    malformed = {"target": host.provider_id, "name": "default"}
    hooks.attach_gate = asyncio.Event()
    runtime = ProviderRuntime(
        host.host_data(link_definitions=[initial, other_target, malformed]), hooks
    )
    task = asyncio.create_task(runtime.run())
    try:
        await until(lambda: hooks.calls == [("attach",)], "attach")
        # While attach runs: a put (on both subjects, as a host sends it) and a delete.
        await host.put_link(nc, host.link_definition("app-early", {"DB": "early"}))
        await host.delete_link(nc, "app-initial")
        await until(lambda: runtime._link_messages.qsize() == 3, "3 held messages")
        assert hooks.calls == [("attach",)]  # held, not applied

        hooks.attach_gate.set()
        await wait_until_serving(host, nc, task)
        deleted = LinkDefinition.from_json(host.link_definition("app-initial", {}))
        assert hooks.calls == [
            ("attach",),
            ("put", "app-initial", "default", {"DB": "initial"}),  # HostData's first
            ("put", "app-early", "default", {"DB": "early"}),  # then held ones, in order,
            ("delete", deleted),  # the second copy of the put de-duplicated
        ]
        assert hooks.links == {("app-early", "default"): {"DB": "early"}}
        assert runtime._link_messages.qsize() == 0
        (services,) = hooks.attached
        assert services.host_data is runtime.host_data
        assert services.prefix == f"{host.lattice}.{host.provider_id}"
        [skipped] = records(caplog, "ignoring malformed link definition")
        assert skipped.error == "link definition lacks 'source_id'"  # type: ignore[attr-defined]
    finally:
        hooks.attach_gate.set()
        await runtime.stop()
        await asyncio.wait_for(task, 5)


async def test_an_unreachable_lattice_ends_run_with_lattice_unavailable(
    hooks: RecordingHooks,
) -> None:
    port = free_port()  # nothing listens there
    runtime = ProviderRuntime(
        HostData(lattice_rpc_url=f"127.0.0.1:{port}", config={"NATS_CONNECT_TIMEOUT": "0.5"}),
        hooks,
    )
    with pytest.raises(LatticeUnavailable) as raised:
        await asyncio.wait_for(runtime.run(), 10)
    assert str(raised.value) == (
        f"cannot connect to the lattice at nats://127.0.0.1:{port} within 0.5 s: connection refused"
    )
    assert hooks.calls == []
    assert runtime._lattice.client.is_closed


# --- link put -------------------------------------------------------------------------------


async def test_the_same_put_twice_on_both_subjects_reaches_the_hook_once(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    async with serving(host, nc, hooks):
        first = host.link_definition("app-a", {"DB": "one", "USER": "u"})
        await host.put_link(nc, first)  # the xkey subject, then the provider id's
        await host.put_link(nc, first)  # the host sends it again
        await barrier(host, nc, hooks)
        assert hooks.after_attach() == [("put", "app-a", "default", {"DB": "one", "USER": "u"})]

        # Only an identical put is a duplicate: a changed config is applied (once).
        second = host.link_definition("app-a", {"DB": "two", "USER": "u"})
        await host.put_link(nc, second)
        await barrier(host, nc, hooks)
        assert hooks.after_attach() == [
            ("put", "app-a", "default", {"DB": "one", "USER": "u"}),
            ("put", "app-a", "default", {"DB": "two", "USER": "u"}),
        ]
        # The same source under another link name is another link.
        await host.put_link(nc, host.link_definition("app-a", {"DB": "two", "USER": "u"}, name="b"))
        await barrier(host, nc, hooks)
        assert hooks.links == {
            ("app-a", "default"): {"DB": "two", "USER": "u"},
            ("app-a", "b"): {"DB": "two", "USER": "u"},
        }
        assert len(hooks.after_attach()) == 3


async def test_a_put_for_another_provider_is_ignored(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    async with serving(host, nc, hooks):
        foreign = {**host.link_definition("app-foreign", {"DB": "x"}), "target": "other-provider"}
        for put_subject in put_subjects(host):
            await publish_json(nc, put_subject, foreign)
        await publish_json(nc, host.subject(host.provider_id, "linkdefs.del"), foreign)
        await barrier(host, nc, hooks)
        assert hooks.after_attach() == []
        assert hooks.links == {}


async def test_malformed_link_puts_are_logged_and_serving_goes_on(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    target = host.provider_id
    not_json = [b"{not json", b"", b"\xff\xfe"]
    wrong_shapes: list[tuple[Any, str]] = [
        ([1, 2], "a link definition must be a JSON object"),
        (None, "a link definition must be a JSON object"),
        ({"target": target}, "link definition lacks 'source_id'"),
        ({"source_id": "app-m"}, "link definition lacks 'target'"),
        ({"source_id": "app-m", "target": target, "target_config": ["DB"]},
         "target_config must be an object"),
        ({"source_id": "app-m", "target": target, "target_secrets": "sealed"},
         "target_secrets must be a list of byte values"),
        ({"source_id": "app-m", "target": target, "target_secrets": [1, 256]},
         "target_secrets must be a list of byte values"),
    ]  # fmt: skip
    async with serving(host, nc, hooks):
        for put_subject in put_subjects(host):
            for payload in not_json:
                await nc.publish(put_subject, payload)
            for document, _ in wrong_shapes:
                await publish_json(nc, put_subject, document)
        await host.put_link(nc, host.link_definition("app-valid", {"DB": "ok"}))
        await barrier(host, nc, hooks)
        assert hooks.after_attach() == [("put", "app-valid", "default", {"DB": "ok"})]
        assert len(records(caplog, "ignoring link put that is not JSON")) == 2 * len(not_json)
        malformed = records(caplog, "ignoring malformed link definition")
        errors = sorted(record.error for record in malformed)  # type: ignore[attr-defined]
        assert errors == sorted(2 * [error for _, error in wrong_shapes])
        assert {record.levelno for record in malformed} == {logging.WARNING}


async def test_a_put_hook_that_raises_is_logged_and_an_identical_put_is_not_retried(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    hooks.put_errors["app-bad"] = ValueError("POSTGRES_PORT is not a number")
    bad = host.link_definition("app-bad", {"POSTGRES_PORT": "x"})
    async with serving(host, nc, hooks):
        await host.put_link(nc, bad)
        await host.put_link(nc, bad)
        await barrier(host, nc, hooks)
        # The runtime counts the link as applied even though the hook failed: the identical
        # put again is a duplicate, only a changed one reaches the hook.
        assert hooks.after_attach() == [("put", "app-bad", "default", {"POSTGRES_PORT": "x"})]
        [refused] = records(caplog, "link refused")
        assert refused.levelno == logging.ERROR
        assert (refused.source_id, refused.link_name, refused.error) == (  # type: ignore[attr-defined]
            "app-bad", "default", "POSTGRES_PORT is not a number"
        )  # fmt: skip
        del hooks.put_errors["app-bad"]
        await host.put_link(nc, host.link_definition("app-bad", {"POSTGRES_PORT": "5432"}))
        await barrier(host, nc, hooks)
        assert hooks.links == {("app-bad", "default"): {"POSTGRES_PORT": "5432"}}
        assert len(hooks.after_attach()) == 2


# --- secrets --------------------------------------------------------------------------------


async def test_link_secrets_are_opened_win_over_config_and_are_redacted_in_health(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    plain_password = f"plainpw-{uuid.uuid4().hex}"
    config = {"POSTGRES_PASSWORD": plain_password, "TOKEN": "from-config", "USER": "app"}
    definition = host.link_definition("app-s", config, secrets={"TOKEN": secret})
    async with serving(host, nc, hooks):
        await host.put_link(nc, definition)  # with secrets: on the xkey subject only
        await barrier(host, nc, hooks)
        assert hooks.after_attach() == [
            ("put", "app-s", "default",
             {"POSTGRES_PASSWORD": plain_password, "TOKEN": secret, "USER": "app"}),
        ]  # fmt: skip
        hooks.health_result = (False, f"login with {secret} / {plain_password} failed")
        reply = await nc.request(host.subject(host.provider_id, "health"), b"", timeout=5)
        assert json.loads(reply.data) == {
            "healthy": False,
            "message": "login with [redacted] / [redacted] failed",
        }


@pytest.mark.parametrize(
    ("host_data", "sealed_for_us", "reason"),
    [
        ({}, False, "link secrets: sealed message cannot be opened with these keys"),
        ({"provider_xkey_private_key": ""}, True, NO_XKEYS),
        ({"provider_xkey_private_key": "SXNOTASEED"}, True, NO_XKEYS),
        ({"host_xkey_public_key": ""}, True, NO_XKEYS),
    ],
    ids=["sealed-for-another-provider", "no-provider-xkey", "unusable-provider-xkey",
         "no-host-xkey"],
)  # fmt: skip
async def test_secrets_that_cannot_be_opened_refuse_the_link(
    host: LatticeHost,
    nc: Any,
    hooks: RecordingHooks,
    host_data: dict[str, str],
    sealed_for_us: bool,
    reason: str,
) -> None:
    recipient = host.provider_keys if sealed_for_us else CurveKeyPair.generate()
    definition = {
        **host.link_definition("app-sealed", {"DB": "x"}),
        "target_secrets": seal_secrets({"PW": "pw"}, host.host_keys, recipient.public_key),
    }
    async with serving(host, nc, hooks, **host_data) as served:
        # Without a usable xkey only the provider id's put subject is subscribed.
        has_xkeys = served.runtime.xkeys is not None
        assert has_xkeys == ("provider_xkey_private_key" not in host_data)
        put_subject = put_subjects(host)[0 if has_xkeys else 1]
        await publish_json(nc, put_subject, definition)
        await until(lambda: len(hooks.calls) == 2, "the refusal")
        assert hooks.after_attach() == [("refuse", "app-sealed", "default", reason)]
        # Refusal is not sticky: the link put again without secrets is applied.
        await publish_json(nc, put_subject, host.link_definition("app-sealed", {"DB": "x"}))
        await until(lambda: len(hooks.calls) == 3, "the put")
        assert hooks.calls[2] == ("put", "app-sealed", "default", {"DB": "x"})


# --- link delete ----------------------------------------------------------------------------


async def test_link_deletes_reach_the_hook_even_for_links_never_put(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    delete_subject = host.subject(host.provider_id, "linkdefs.del")
    async with serving(host, nc, hooks):
        await host.delete_link(nc, "app-never-put", name="other")
        for payload in (b"{oops", b"[]", b'{"target": "x"}'):
            await nc.publish(delete_subject, payload)
        await barrier(host, nc, hooks)
        never_put = LinkDefinition.from_json(
            host.link_definition("app-never-put", {}, name="other")
        )
        assert hooks.after_attach() == [("delete", never_put)]
        errors = [
            record.error  # type: ignore[attr-defined]
            for record in records(caplog, "ignoring malformed link delete")
        ]
        assert errors == [
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            "a link definition must be a JSON object",
            "link definition lacks 'source_id'",
        ]

        # A delete forgets the put: the identical put afterwards is applied again.
        link = host.link_definition("app-x", {"DB": "x"})
        await host.put_link(nc, link)
        await barrier(host, nc, hooks)
        await host.delete_link(nc, "app-x")
        await barrier(host, nc, hooks)
        await host.put_link(nc, link)
        await barrier(host, nc, hooks)
        assert hooks.after_attach()[1:] == [
            ("put", "app-x", "default", {"DB": "x"}),
            ("delete", LinkDefinition.from_json(host.link_definition("app-x", {}))),
            ("put", "app-x", "default", {"DB": "x"}),
        ]
        assert hooks.links == {("app-x", "default"): {"DB": "x"}}


# --- health ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "reply"),
    [
        (RuntimeError("connection to 10.0.0.7 refused"),
         b'{"healthy": false, "message": "health check failed: RuntimeError"}'),
        ((False, "no pool"), b'{"healthy": false, "message": "no pool"}'),
        ((True, "2 links"), b'{"healthy": true, "message": "2 links"}'),
    ],
    ids=["hook-raises", "unhealthy", "healthy"],
)  # fmt: skip
async def test_health_replies_with_the_hooks_verdict_even_when_it_raises(
    host: LatticeHost,
    nc: Any,
    hooks: RecordingHooks,
    result: tuple[bool, str] | Exception,
    reply: bytes,
) -> None:
    async with serving(host, nc, hooks):
        hooks.health_result = result
        checks = hooks.health_checks
        answer = await nc.request(host.subject(host.provider_id, "health"), b"", timeout=5)
        assert answer.data == reply
        assert hooks.health_checks == checks + 1
        answer = await nc.request(host.subject(host.provider_id, "health"), b"", timeout=5)
        assert answer.data == reply  # the subscription lives on after a raising hook


# --- config update --------------------------------------------------------------------------


async def test_a_config_update_hands_the_hook_every_value_as_text_and_nothing_else(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RUNTIME_LOG)
    update_subject = host.subject(host.provider_id, "config.update")
    # A hook's error whose text reads like the server refusing our credentials: it must be
    # handled as the hook's failure, never as the connection's (which would stop the runtime).
    hooks.config_errors.append(RuntimeError("authorization violation, says the hook"))
    async with serving(host, nc, hooks, config={"BEFORE": "1"}) as served:
        await host.put_link(nc, host.link_definition("app-c", {"DB": "c"}))
        await barrier(host, nc, hooks)
        await host.update_config(nc, {"RAISES": "yes"})
        await nc.publish(update_subject, b"{not json")
        await nc.publish(update_subject, b'["A", "B"]')
        update = {"S": "text", "N": 5, "F": 1.5, "T": True, "Z": None, "O": {"k": 1}}
        await publish_json(nc, update_subject, update)
        await nc.flush()
        await until(lambda: len(hooks.calls) == 4, "two config updates")
        assert hooks.after_attach() == [
            ("put", "app-c", "default", {"DB": "c"}),
            ("config", {"RAISES": "yes"}),  # its hook raised: the subscription lives on
            # Non-text JSON values become Python's str() of them, not JSON text.
            ("config",
             {"S": "text", "N": "5", "F": "1.5", "T": "True", "Z": "None", "O": "{'k': 1}"}),
        ]  # fmt: skip
        # Only the hook learns of it: HostData keeps the config the provider started with,
        # and links are left as they were.
        assert served.runtime.host_data.config == {"BEFORE": "1"}
        assert hooks.links == {("app-c", "default"): {"DB": "c"}}
        assert len(records(caplog, "ignoring config update that is not JSON")) == 1
        assert len(records(caplog, "ignoring config update that is not an object")) == 1
        [updated] = records(caplog, "config updated")  # not for the update whose hook raised
        assert updated.keys == ["F", "N", "O", "S", "T", "Z"]  # type: ignore[attr-defined]
        [failed] = records(caplog, "config update not applied")
        assert "authorization violation" in failed.error  # type: ignore[attr-defined]
        assert not served.task.done()


# --- shutdown -------------------------------------------------------------------------------


@pytest.mark.parametrize("shutdown_delay", [0.0, 5.0], ids=["prompt-cleanup", "hung-cleanup"])
async def test_only_our_hosts_shutdown_stops_the_runtime(
    host: LatticeHost,
    nc: Any,
    hooks: RecordingHooks,
    caplog: pytest.LogCaptureFixture,
    shutdown_delay: float,
) -> None:
    hooks.shutdown_delay = shutdown_delay
    shutdown_subject = host.subject(host.provider_id, "default.shutdown")
    async with serving(host, nc, hooks) as served:
        ignored = await nc.subscribe(nc.new_inbox())
        for body in (b'{"host_id": "NSOMEONEELSE"}', b"{}", b"not json", b"[1]", b"null"):
            await nc.publish(shutdown_subject, body, reply=ignored.subject)
        reply = await host.shutdown(nc, timeout=5)  # handled after the ones above
        assert reply == b"shutting down"
        assert ignored.pending_msgs == 0  # none of those was answered (nor acted on)
        await asyncio.wait_for(served.task, 5)  # run() returns
        assert served.task.result() is None
        assert hooks.after_attach()[:1] == [("shutdown",)]
        [flush] = hooks.after_attach()[1:]
        assert flush[0] == "flush"
        assert 0.01 <= flush[1] <= FLUSH_BUDGET
        assert served.runtime.server is not None and not served.runtime.server.accepting
        unfinished = records(caplog, "cleanup did not finish")
        assert [r.error for r in unfinished] == (  # type: ignore[attr-defined]
            ["TimeoutError"] if shutdown_delay else []
        )


# --- links the lattice holds (reconciliation at start) --------------------------------------


async def answer_link_get(nc: Any, host: LatticeHost, links: list[dict[str, Any]],
                          configs: dict[str, dict[str, str]] | None = None) -> None:  # fmt: skip
    control = ControlInterface(host.lattice, lambda: links,
                               None if configs is None else configs.get)  # fmt: skip
    await control.serve(nc)


async def test_links_the_lattice_holds_are_compared_at_start(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    configs = {"cfg-a": {"A": "1", "B": "2"}, "cfg-b": {"B": "3"}}

    def summary(source: str, target: str, names: list[str]) -> dict[str, Any]:
        return {"source_id": source, "target": target, "name": "default",
                "wit_namespace": "wasmcloud", "wit_package": "postgres",
                "interfaces": ["query"], "source_config": [], "target_config": names}  # fmt: skip

    await answer_link_get(nc, host, [
        summary("app-kept", host.provider_id, ["cfg-a"]),
        summary("app-missed", host.provider_id, ["cfg-a", "cfg-b"]),
        summary("app-elsewhere", "other-provider", ["SECRET_x"]),  # not ours: not compared
    ], configs)  # fmt: skip
    kept = host.link_definition("app-kept", {"K": "1"})
    gone = host.link_definition("app-gone", {"G": "1"})
    # Deleted while we started: the hook gets a link with only its key and target.
    gone_stub = LinkDefinition("app-gone", host.provider_id, "default", "", "", (), {}, None)
    async with serving(host, nc, hooks, link_definitions=[kept, gone]):
        await until(lambda: len(hooks.calls) == 5, "the comparison's delete and put")
        assert hooks.calls == [
            ("attach",),
            ("put", "app-kept", "default", {"K": "1"}),
            ("put", "app-gone", "default", {"G": "1"}),
            ("delete", gone_stub),
            ("put", "app-missed", "default", {"A": "1", "B": "3"}),  # configs merged in order
        ]


async def test_a_missed_link_with_secrets_ends_run_once_for_a_restart(
    host: LatticeHost, nc: Any, hooks: RecordingHooks, caplog: pytest.LogCaptureFixture
) -> None:
    missed = {"source_id": "app-secret", "target": host.provider_id, "name": "default",
              "target_config": ["SECRET_pw"]}  # fmt: skip
    await answer_link_get(nc, host, [missed])
    runtime = ProviderRuntime(host.host_data(), hooks)
    with pytest.raises(LatticeUnavailable) as raised:
        await asyncio.wait_for(runtime.run(), 10)
    assert str(raised.value) == (
        "links were put while this provider started (app-secret (default)); exiting so that "
        "the host restarts it with them"
    )
    assert [call[0] for call in hooks.calls] == ["attach", "shutdown", "flush"]
    memo = RestartMemo(host.lattice, host.provider_id, host.host_id)
    assert memo.already_restarted_for(frozenset({("app-secret", "default")}))

    # Restarted still without it (the host cannot resolve it): logged, and serving goes on.
    again = RecordingHooks()
    async with serving(host, nc, again) as served:
        message = (
            "links in the lattice were not handed over, even after a restart (their config "
            "or secrets may not resolve on the host)"
        )
        await until(lambda: bool(records(caplog, message)), "the error line")
        [logged] = records(caplog, message)
        assert logged.links == "app-secret (default)"  # type: ignore[attr-defined]
        assert not served.task.done()
        assert again.calls == [("attach",)]


# --- defects found by this file, fixed: each test failed before its fix -----------------------


async def test_a_deleted_link_stays_deleted_when_its_second_put_copy_is_handled_late(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    """Once each put subject had its own callback, a put's xkey copy queued behind a slow hook
    could be applied after the delete that followed it. One queue keeps arrival order."""
    hooks.put_gates["app-slow"] = gate = asyncio.Event()
    async with serving(host, nc, hooks) as served:
        await host.put_link(nc, host.link_definition("app-slow", {"DB": "slow"}))
        await until(lambda: ("put", "app-slow", "default", {"DB": "slow"}) in hooks.calls, "slow")
        # While the slow hook runs, a link is put (both copies) and deleted, as a host may do.
        await host.put_link(nc, host.link_definition("app-brief", {"DB": "b"}))
        await host.delete_link(nc, "app-brief")
        await nc.flush()
        queued = served.runtime._link_messages
        await until(lambda: queued.qsize() == 4, "the slow put's copy and the brief link's 3")
        gate.set()
        await barrier(host, nc, hooks)
        assert ("app-brief", "default") not in hooks.links, hooks.after_attach()
        applied = [
            (call[0], getattr(call[1], "source_id", call[1])) for call in hooks.after_attach()
        ]
        assert applied[:3] == [("put", "app-slow"), ("put", "app-brief"), ("delete", "app-brief")]


async def test_a_wrong_shaped_interfaces_field_does_not_stop_the_start(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    wrong = {**host.link_definition("app-w", {"DB": "w"}), "interfaces": 5}
    good = host.link_definition("app-good", {"DB": "g"})
    async with serving(host, nc, hooks, link_definitions=[wrong, good]):
        assert hooks.links == {("app-good", "default"): {"DB": "g"}}


async def test_the_lattices_answer_waits_its_turn_behind_live_link_messages(
    host: LatticeHost, nc: Any, hooks: RecordingHooks
) -> None:
    """What the comparison at start changes goes through the one link queue: a delete it
    decides on waits behind a put already being applied, never runs beside it."""
    hooks.put_gates["app-slow"] = gate = asyncio.Event()

    async def answer(msg: Any) -> None:  # once the live put is being applied
        await until(lambda: ("put", "app-slow", "default", {"S": "1"}) in hooks.calls, "slow")
        await msg.respond(control_reply([{"source_id": "app-kept", "target": host.provider_id,
                                          "name": "default", "target_config": []}]))  # fmt: skip

    await nc.subscribe(link_get_subject(host.lattice), cb=answer)
    kept = host.link_definition("app-kept", {"K": "1"})
    gone = host.link_definition("app-gone", {"G": "1"})
    gone_stub = LinkDefinition("app-gone", host.provider_id, "default", "", "", (), {}, None)
    async with serving(host, nc, hooks, link_definitions=[kept, gone]) as served:
        await host.put_link(nc, host.link_definition("app-slow", {"S": "1"}))
        queued = served.runtime._link_messages
        # The slow put's second copy and the lattice's answer wait behind it.
        await until(lambda: queued.qsize() == 2, "the answer queued behind the slow put")
        assert ("delete", gone_stub) not in hooks.calls
        gate.set()
        await until(lambda: ("delete", gone_stub) in hooks.calls, "the delete, in its turn")
        assert hooks.after_attach() == [
            ("put", "app-kept", "default", {"K": "1"}),
            ("put", "app-gone", "default", {"G": "1"}),
            ("put", "app-slow", "default", {"S": "1"}),
            ("delete", gone_stub),
        ]
