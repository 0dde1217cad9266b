"""The provider SDK layer: lattice connection, lifecycle subjects and the wRPC server.

Business code implements `ProviderHooks`; this module turns host traffic into hook calls:
link put (on both the xkey subject and the provider-id subject, de-duplicated), link delete,
health, config update and shutdown (only for our host: stop taking calls, finish or fail the
in-flight ones, release resources, then reply, all inside the host's 300 ms window).

Link subjects are subscribed first, as soon as the lattice connection is up, and what arrives
on them waits until the host's links are applied; once everything is subscribed the lattice is
asked for the links it holds for us (`link_reconciliation`), so that a put or delete the host
published before we listened is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from provider.common.redaction import SecretRedactor
from provider.lattice.host_data import HostData
from provider.lattice.lattice_connection import LatticeConnection, LatticeUnavailable
from provider.lattice.link_reconciliation import (
    LinkKey,
    RestartMemo,
    config_get_subject,
    config_values,
    differences,
    lattice_links,
    link_get_subject,
    plain_config_names,
    resolved_link,
)
from provider.lattice.links import LinkDefinition, LinkError, secret_text
from provider.lattice.replicas import replica_prefix
from provider.lattice.services import LatticeServices
from provider.lattice.xkeys import CurveKeyPair, XKeyError
from provider.nats.live_subscriptions import subscriptions_live
from provider.wrpc.server import CallObserver, Export, WrpcServer

log = logging.getLogger(__name__)

# A health reply is useful only inside the host's RPC timeout (HostData's
# default_rpc_timeout_ms, 2 s when absent): a later one is dropped with a warning.
HEALTH_SHARE_OF_RPC_TIMEOUT = 0.5


def health_deadline(host_data: HostData) -> float:
    """Seconds the provider gives itself to answer a health check."""
    return HEALTH_SHARE_OF_RPC_TIMEOUT * (host_data.default_rpc_timeout_ms or 2000) / 1000


LinkHandler = Callable[[Any], Awaitable[None]]

# The host waits 300 ms for the reply: 50 ms to drain queued calls, 120 ms for in-flight calls
# to finish, 50 ms to answer the rest, 60 ms to close the pools.
SHUTDOWN_GRACE = 0.12
# Whatever of the 300 ms is left after that goes to flushing telemetry, at most 150 ms (a
# local collector takes a few; one that is down would take it all); 20 ms stay for the reply.
SHUTDOWN_BUDGET = 0.28
FLUSH_BUDGET = 0.15
# The lattice is asked for our links once subscribed and once more a little later (another
# host answering may not have seen the newest put yet); each answer waits at most this long.
RECONCILE_AT = (0.0, 3.0)
# And again after the lattice connection comes back from an outage, when the hosts have had
# time to reconnect too (a puts or delete published meanwhile never reached us).
RECONCILE_AFTER_RECONNECT = (1.0, 4.0, 10.0)
UNHEARD_IN_OUTAGE = "while the lattice connection was down"
LINK_GET_TIMEOUT = 2.0


class ProviderHooks(Protocol):
    """What a provider plugs into the runtime: every hook the runtime calls, none optional."""

    # Told of every call (a span per call when tracing is on); None: calls are not observed.
    call_observer: CallObserver | None

    def exports(self) -> Sequence[Export]:
        """The functions every replica serves (one queue group shared by all replicas)."""

    def replica_exports(self) -> Sequence[Export]:
        """Functions only this replica serves, on `replica_prefix(prefix, replica_id)`: calls
        other replicas forward to it (e.g. on a transaction it holds). Empty for none."""

    @property
    def replica_id(self) -> str:
        """This replica's name among the provider's replicas."""

    async def attach(self, services: LatticeServices) -> None:
        """Called once connected to the lattice, before links are applied."""

    async def put_link(self, link: LinkDefinition, values: dict[str, str]) -> None: ...

    async def delete_link(self, link: LinkDefinition) -> None: ...

    async def refuse_link(self, link: LinkDefinition, reason: str) -> None:
        """A link whose definition or secrets cannot be used: its calls get `reason`."""

    async def health(self) -> tuple[bool, str]: ...

    async def config_update(self, config: dict[str, str]) -> None: ...

    async def shutdown(self) -> None: ...

    async def flush(self, timeout: float) -> None:
        """Send what is buffered for export (telemetry) within `timeout` seconds: the last
        step of shutdown, after the calls are answered and before the host is."""


def subject(host_data: HostData, key: str, suffix: str) -> str:
    return f"wasmbus.rpc.{host_data.lattice}.{key}.{suffix}"


class ProviderRuntime:
    def __init__(
        self, host_data: HostData, hooks: ProviderHooks, redactor: SecretRedactor | None = None
    ) -> None:
        self.host_data = host_data
        self.hooks = hooks
        # Learns every secret (HostData's, then each link's) before anything can log it.
        self.redactor = redactor or SecretRedactor()
        self.prefix = f"{host_data.lattice}.{host_data.provider_key}"
        self.xkeys: CurveKeyPair | None = None
        if host_data.provider_xkey_private_key:
            try:
                self.xkeys = CurveKeyPair.from_seed(host_data.provider_xkey_private_key)
            except XKeyError as exc:
                log.error("provider xkey is unusable; links with secrets will be refused",
                          extra={"error": str(exc)})  # fmt: skip
        self._applied_links: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._nc: Any = None
        self._server: WrpcServer | None = None
        self._replica_server: WrpcServer | None = None
        self._stopped = asyncio.Event()
        self._shutting_down = False
        self._fatal: str | None = None
        self._own_subscriptions: set[str] = set()
        # Every link put and delete, from all three subjects, in arrival order: one task applies
        # them one at a time, so a put's second copy can never overtake the delete behind it.
        # Nothing takes from it until the host's links are applied (see `start`).
        self._link_messages: asyncio.Queue[tuple[LinkHandler, Any]] = asyncio.Queue()
        self._link_worker: asyncio.Task[None] | None = None
        # Links put or deleted on our subjects since we subscribed (None once compared).
        self._changed_links: set[LinkKey] | None = set()
        self._reconciling: asyncio.Task[None] | None = None
        self._comparison = 0  # which comparison is current: an older one's answer is dropped
        self._lattice = LatticeConnection(host_data, self._on_fatal)
        self._lattice.on_reconnect = self._compare_links_again
        self.redactor.add(
            [
                host_data.lattice_rpc_user_seed,
                host_data.lattice_rpc_user_jwt,
                host_data.provider_xkey_private_key,
                *(secret_text(value) for value in host_data.secrets.values()),
            ]
        )

    @property
    def server(self) -> WrpcServer | None:
        return self._server

    async def start(self) -> None:
        """Connect (bounded: raises LatticeUnavailable), subscribe, apply the host's links."""
        self._nc = await self._lattice.connect()
        link_subjects = await self._subscribe_links()
        await self.hooks.attach(LatticeServices(self._nc, self.host_data))
        for definition in self.host_data.link_definitions:  # a failing hook never stops us
            await self._apply_link_message(self._put_link_document, definition)
        self._changed_links = set()  # from here on: only what arrives on our subjects
        while not self._link_messages.empty():  # held ones, before any call is taken
            await self._apply_link_message(*self._link_messages.get_nowait())
        self._link_worker = asyncio.create_task(self._apply_link_messages())
        data_path = await self._lattice.open_data_path()
        observer = self.hooks.call_observer
        # Functions only this replica serves (calls other replicas forward to it), subscribed
        # first: once the shared subjects are, this replica hands out transaction tokens that
        # name it, and another replica may forward a call on one at once.
        replica_exports = self.hooks.replica_exports()
        if replica_exports:
            own = replica_prefix(self.prefix, self.hooks.replica_id)
            self._replica_server = WrpcServer(data_path, own)
            self._replica_server.observer = observer
            for export in replica_exports:
                self._replica_server.add(export)
            await self._replica_server.start()
        self._server = WrpcServer(data_path, self.prefix)
        self._server.observer = observer
        for export in self.hooks.exports():
            self._server.add(export)
        await self._server.start()
        key = self.host_data.provider_key
        lifecycle = {
            subject(self.host_data, key, "health"): self._on_health,
            subject(self.host_data, key, "default.shutdown"): self._on_shutdown,
            subject(self.host_data, key, "config.update"): self._on_config_update,
        }
        for lifecycle_subject, callback in lifecycle.items():
            await self._nc.subscribe(lifecycle_subject, cb=callback)
        self._own_subscriptions = {*link_subjects, *lifecycle, *self._server.subjects()}
        if self._replica_server is not None:
            self._own_subscriptions |= set(self._replica_server.subjects())
        await subscriptions_live(self._nc)
        self._reconciling = asyncio.create_task(self._reconcile_links(RECONCILE_AT, 0))
        log.info("provider started", extra={"prefix": self.prefix, "nats": self.host_data.nats_url})

    async def _subscribe_links(self) -> list[str]:
        """Link put (provider id and xkey) and delete subjects, first of all (see the module)."""
        key = self.host_data.provider_key
        puts = {subject(self.host_data, key, "linkdefs.put")}
        if self.xkeys is not None:
            puts.add(subject(self.host_data, self.xkeys.public_key, "linkdefs.put"))
        for put_subject in sorted(puts):
            await self._nc.subscribe(put_subject, cb=self._queued(self._on_link_put))
        delete_subject = subject(self.host_data, key, "linkdefs.del")
        await self._nc.subscribe(delete_subject, cb=self._queued(self._on_link_del))
        await subscriptions_live(self._nc)
        return [*sorted(puts), delete_subject]

    async def _put_missed_link(self, link: dict[str, Any], when: str) -> bool:
        """Apply a link put before we listened from its named configs; False when only the
        host can hand it over (it names a secret, or a config cannot be read)."""
        names = plain_config_names(link)
        if names is None:
            return False
        configs = []
        for name in names:
            try:
                reply = await self._nc.request(config_get_subject(self.host_data.lattice, name),
                                               b"", timeout=LINK_GET_TIMEOUT)  # fmt: skip
            except Exception:
                return False
            values = config_values(reply.data)
            if values is None:
                return False
            configs.append(values)
        where = {"source_id": link.get("source_id"), "link_name": link.get("name")}
        log.info(f"link put {when}, applied from its config", extra=where)
        await self._put_link_document(resolved_link(link, configs))
        return True

    def _queued(self, handler: LinkHandler) -> LinkHandler:
        """A subscription callback that puts `handler`'s messages on the one link queue."""

        async def queue(msg: Any) -> None:
            self._link_messages.put_nowait((handler, msg))

        return queue

    async def _apply_link_messages(self) -> None:
        while True:
            await self._apply_link_message(*await self._link_messages.get())

    async def _apply_link_message(self, handler: LinkHandler, msg: Any) -> None:
        try:
            await handler(msg)
        except Exception as exc:  # a hook's failure: logged as such, never as the connection's
            log.error("link message not applied", extra={"error": repr(exc)})

    def _compare_links_again(self) -> None:
        """After a lattice outage: links put or deleted meanwhile were published to nobody.
        Undone, a lost delete keeps its pool, series and shared records for the process's
        life, and a lost put leaves its component without a link."""
        if self._shutting_down or self._link_worker is None:
            return  # still starting: the first comparison is still to come
        if self._reconciling is not None:
            self._reconciling.cancel()
        self._comparison += 1
        self._changed_links = set()  # what arrives on our subjects from now on is newer
        self._reconciling = asyncio.create_task(
            self._reconcile_links(RECONCILE_AFTER_RECONNECT, self._comparison)
        )

    async def _reconcile_links(self, delays: Sequence[float], comparison: int) -> None:
        """Compare our links with the lattice's (see `link_reconciliation`); a lattice without
        a control interface on this connection (a test host, permissions) is not compared.
        A link put or deleted on our subjects since we subscribed is never touched here: that
        message is newer than whatever a (possibly lagging) host answers."""
        try:
            await self._compare_links(delays, comparison)
        except Exception as exc:  # a bad reply or hook: the provider serves on regardless
            log.warning("links not compared with the lattice", extra={"error": repr(exc)})
        finally:
            if comparison == self._comparison:  # a newer comparison keeps its own record
                self._changed_links = None  # only needed while comparing: nothing grows after

    async def _compare_links(self, delays: Sequence[float], comparison: int) -> None:
        request = link_get_subject(self.host_data.lattice)
        for delay in delays:
            await asyncio.sleep(delay)
            if self._shutting_down:
                return
            asked_with = set(self._applied_links)
            try:
                reply = await self._nc.request(request, b"", timeout=LINK_GET_TIMEOUT)
            except Exception as exc:  # no host answers (yet): the next delay asks again
                log.debug("links not compared with the lattice", extra={"error": repr(exc)})
                continue
            lattice = lattice_links(reply.data, self.host_data.provider_key)
            if lattice is None:
                return
            # Applied from the link queue, in turn with the puts and deletes arriving live: a
            # put queued behind the answer is applied after it, never overtaken by it.
            applied = asyncio.Event()
            self._link_messages.put_nowait(
                (self._apply_lattice_links, (lattice, asked_with, applied, comparison))
            )
            await applied.wait()
            if self._fatal is not None:
                return

    async def _apply_lattice_links(
        self, answer: tuple[dict[LinkKey, dict[str, Any]], set[LinkKey], asyncio.Event, int]
    ) -> None:
        """The lattice's links against ours (a link-queue handler): what it no longer holds is
        deleted, what we missed is put from its configs, or the provider exits for the host to
        restart it with them (once per set of links)."""
        lattice, asked_with, applied, comparison = answer
        try:
            if comparison != self._comparison:
                return  # asked before the latest outage: a newer comparison is under way
            when = "while this provider started" if comparison == 0 else UNHEARD_IN_OUTAGE
            changed = self._changed_links if self._changed_links is not None else set()
            found = differences(lattice, self._applied_links, asked_with, changed)
            for source_id, name in sorted(found.gone):
                log.info(f"link deleted {when}", extra={"source_id": source_id,
                                                        "link_name": name})  # fmt: skip
                await self._delete_link(source_id, name)
            unresolved = {key for key in sorted(found.missing)
                          if not await self._put_missed_link(lattice[key], when)}  # fmt: skip
            if unresolved:
                self._restart_for(unresolved, when)
        finally:
            applied.set()

    def _restart_for(self, unresolved: set[LinkKey], when: str) -> None:
        """Links only the host can hand over: exit so that it restarts us with them."""
        memo = RestartMemo(self.host_data.lattice, self.host_data.provider_key,
                           self.host_data.host_id)  # fmt: skip
        missing = ", ".join(f"{source} ({name})" for source, name in sorted(unresolved))
        if memo.already_restarted_for(frozenset(unresolved)):
            log.error("links in the lattice were not handed over, even after a restart "
                      "(their config or secrets may not resolve on the host)",
                      extra={"links": missing})  # fmt: skip
            return
        memo.remember(frozenset(unresolved))
        self._on_fatal(f"links were put {when} ({missing}); exiting "
                       "so that the host restarts it with them")  # fmt: skip

    async def run(self) -> None:
        """Start, then serve until shut down by the host or a signal; raises
        LatticeUnavailable when the lattice cannot be served (the host then restarts us)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, lambda: asyncio.ensure_future(self.stop()))
        try:
            await self.start()
            await self._stopped.wait()
            if self._fatal is not None:
                await self.shutdown()
        finally:  # also when start() fails: no connection or ping task left behind
            with contextlib.suppress(Exception):
                await self._lattice.close()
        if self._fatal is not None:
            raise LatticeUnavailable(self._fatal)

    def _on_fatal(self, cause: str) -> None:
        if self._fatal is None and not self._shutting_down:
            self._fatal = cause
            self._stopped.set()

    def denied_subscriptions(self) -> list[str]:
        """Our own subscriptions the lattice's permissions refused."""
        # nats-py lower-cases the server's text: compare our subjects the same way.
        own = {subject.lower(): subject for subject in self._own_subscriptions}
        return sorted(
            own[denial.subject.lower()]
            for denial in self._lattice.denials
            if denial.operation == "subscribe" and denial.subject.lower() in own
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def _on_link_put(self, msg: Any) -> None:
        try:
            document = json.loads(msg.data)
        except ValueError:
            log.warning("ignoring link put that is not JSON")
            return
        await self._put_link_document(document)

    async def _put_link_document(self, document: Any) -> None:
        try:
            link = LinkDefinition.from_json(document)
        except LinkError as exc:
            log.warning("ignoring malformed link definition", extra={"error": str(exc)})
            return
        if link.target != self.host_data.provider_key:
            return  # we are not this link's target
        fingerprint = (tuple(sorted(link.target_config.items())), link.target_secrets)
        key = (link.source_id, link.name)
        if self._applied_links.get(key) == fingerprint:
            return  # the same put on the other subject
        self._applied_links[key] = fingerprint
        if self._changed_links is not None:
            self._changed_links.add(key)
        try:
            secrets = link.opened_secrets(self.xkeys, self.host_data.host_xkey_public_key)
            # Before anything can log or answer them: every secret, and a password even when
            # it came as plain config.
            passwords = [v for k, v in link.target_config.items() if "PASSWORD" in k.upper()]
            self.redactor.hold(key, [*secrets.values(), *passwords])
        except LinkError as exc:  # the guest's calls say why, not only the log
            log.error(
                "link refused",
                extra={"source_id": link.source_id, "link_name": link.name, "error": str(exc)},
            )
            await self.hooks.refuse_link(link, str(exc))
            return
        try:
            await self.hooks.put_link(link, {**link.target_config, **secrets})
        except Exception as exc:  # a bad link never takes the provider down
            log.error(
                "link refused",
                extra={"source_id": link.source_id, "link_name": link.name, "error": str(exc)},
            )
            return
        log.info(
            "link put",
            extra={"source_id": link.source_id, "link_name": link.name,
                   "keys": sorted(link.target_config)},
        )  # fmt: skip

    async def _on_link_del(self, msg: Any) -> None:
        try:
            link = LinkDefinition.from_json(json.loads(msg.data))
        except (ValueError, LinkError) as exc:
            log.warning("ignoring malformed link delete", extra={"error": str(exc)})
            return
        if link.target != self.host_data.provider_key:
            return
        if self._changed_links is not None:
            self._changed_links.add((link.source_id, link.name))
        await self._delete_link(link.source_id, link.name, link)
        log.info("link deleted", extra={"source_id": link.source_id, "link_name": link.name})

    async def _delete_link(
        self, source_id: str, name: str, link: LinkDefinition | None = None
    ) -> None:
        self._applied_links.pop((source_id, name), None)
        self.redactor.release((source_id, name))
        if link is None:
            link = LinkDefinition(source_id, self.host_data.provider_key, name, "", "", (), {},
                                  None)  # fmt: skip
        await self.hooks.delete_link(link)

    async def _on_health(self, msg: Any) -> None:
        within = health_deadline(self.host_data)
        try:
            async with asyncio.timeout(within):
                healthy, message = await self.hooks.health()
        except TimeoutError:
            healthy, message = False, f"health not known within {within:g} s"
        except Exception as exc:
            healthy, message = False, f"health check failed: {type(exc).__name__}"
        denied = self.denied_subscriptions()
        if denied:
            healthy = False
            message = f"NATS permissions deny subscribing to {', '.join(denied)}; {message}"
        replies = self._lattice.denied_replies
        if replies is not None:
            healthy = False
            message = (
                f"NATS permissions deny publishing replies to {replies}: calls cannot be "
                f"answered; {message}"
            )
        message = self.redactor.redact(message)
        report: dict[str, Any] = {"healthy": healthy, "message": message}
        if msg.reply:
            await self._nc.publish(msg.reply, json.dumps(report).encode())

    async def _on_config_update(self, msg: Any) -> None:
        try:
            config = json.loads(msg.data)
        except ValueError:
            log.warning("ignoring config update that is not JSON")
            return
        if not isinstance(config, dict):
            log.warning("ignoring config update that is not an object")
            return
        try:
            await self.hooks.config_update({str(k): str(v) for k, v in config.items()})
        except Exception as exc:  # the hook's failure, not the connection's
            log.error("config update not applied", extra={"error": repr(exc)})
            return
        log.info("config updated", extra={"keys": sorted(config)})

    async def _on_shutdown(self, msg: Any) -> None:
        try:
            host_id = json.loads(msg.data).get("host_id")
        except (ValueError, AttributeError):
            host_id = None
        if host_id != self.host_data.host_id:
            return  # another host's provider instance
        started = time.perf_counter()
        await self.shutdown(received_at=started)
        if msg.reply:
            await self._nc.publish(msg.reply, b"shutting down")
            await self._nc.flush(timeout=1)
        log.info("shut down", extra={"ms": round((time.perf_counter() - started) * 1000, 1)})
        self._stopped.set()

    async def shutdown(self, received_at: float | None = None) -> None:
        """Stop taking calls, finish or fail in-flight ones, release resources (idempotent).
        `received_at`: when the host's request arrived (its 300 ms count from then)."""
        if self._shutting_down:
            return
        self._shutting_down = True
        started = time.perf_counter() if received_at is None else received_at
        for task in (self._reconciling, self._link_worker):
            if task is not None:
                task.cancel()
        servers = [s for s in (self._server, self._replica_server) if s is not None]
        if servers:
            await asyncio.gather(*(server.stop(grace=SHUTDOWN_GRACE) for server in servers))
        try:
            await asyncio.wait_for(self.hooks.shutdown(), 0.06)
        except (TimeoutError, Exception) as exc:
            log.warning("cleanup did not finish", extra={"error": type(exc).__name__})
        remaining = min(FLUSH_BUDGET, SHUTDOWN_BUDGET - (time.perf_counter() - started))
        try:
            await asyncio.wait_for(self.hooks.flush(max(remaining, 0.01)), max(remaining, 0.01))
        except (TimeoutError, Exception) as exc:
            log.warning("telemetry not flushed", extra={"error": type(exc).__name__})

    async def stop(self) -> None:
        """Shut down and let `run()` return (signals, tests)."""
        await self.shutdown()
        self._stopped.set()
