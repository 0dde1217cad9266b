"""Run the provider the way a wasmCloud host does, and talk to it on the lattice.

The host starts the provider executable with a cleared environment, writes one
`base64(JSON(HostData))` line to its stdin and closes it, publishes link definitions on
`wasmbus.rpc.{lattice}.{key}.linkdefs.put` (the provider's xkey public key and, for links
without secrets, its id too), polls health, and asks it to shut down with a 300 ms budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

import nats.errors

from provider.lattice.host_data import HostData, encode_host_data
from provider.lattice.links import seal_secrets
from provider.lattice.xkeys import CurveKeyPair

SHUTDOWN_WINDOW = 0.3  # the host's --provider-shutdown-delay-ms default
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m provider` from this checkout: the quick edit-run loop (no archive to rebuild).
SOURCE_COMMAND = (sys.executable, "-m", "provider")


@dataclass
class LatticeHost:
    """The host side of one provider instance: its ids, keys and the HostData it sends."""

    nats_url: str
    lattice: str = field(default_factory=lambda: f"lattice-{uuid.uuid4().hex[:8]}")
    provider_id: str = "sqldb-postgres"
    host_id: str = field(default_factory=lambda: f"N{uuid.uuid4().hex.upper()}")
    host_keys: CurveKeyPair = field(default_factory=CurveKeyPair.generate)
    provider_keys: CurveKeyPair = field(default_factory=CurveKeyPair.generate)
    # The links put and not deleted, by (source id, name): what a host's `link.get` lists.
    links: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def prefix(self) -> str:
        return f"{self.lattice}.{self.provider_id}"

    def host_data(self, **overrides: Any) -> HostData:
        data = HostData(
            lattice_rpc_url=self.nats_url.removeprefix("nats://"),
            lattice_rpc_prefix=self.lattice,
            provider_key=self.provider_id,
            host_id=self.host_id,
            link_name="default",
            instance_id=str(uuid.uuid4()),
            host_xkey_public_key=self.host_keys.public_key,
            provider_xkey_private_key=self.provider_keys.seed,
            default_rpc_timeout_ms=2000,
            structured_logging=True,
            log_level="info",
            otel_config={"enable_observability": False},
        )
        return replace(data, **overrides)

    def link_definition(
        self,
        source_id: str,
        config: dict[str, str],
        secrets: dict[str, str] | None = None,
        name: str = "default",
    ) -> dict[str, Any]:
        return {
            "source_id": source_id,
            "target": self.provider_id,
            "name": name,
            "wit_namespace": "wasmcloud",
            "wit_package": "postgres",
            "interfaces": ["query", "prepared", "transactions"],
            "source_config": {},
            "target_config": config,
            "source_secrets": None,
            "target_secrets": (
                seal_secrets(secrets, self.host_keys, self.provider_keys.public_key)
                if secrets
                else None
            ),
        }

    def subject(self, key: str, suffix: str) -> str:
        return f"wasmbus.rpc.{self.lattice}.{key}.{suffix}"

    async def put_link(self, nc: Any, definition: dict[str, Any]) -> None:
        """As hosts >= 1.1: to the xkey subject, and for links without secrets also the id."""
        self.links[(definition["source_id"], definition.get("name") or "default")] = definition
        payload = json.dumps(definition).encode()
        await nc.publish(self.subject(self.provider_keys.public_key, "linkdefs.put"), payload)
        if not definition.get("target_secrets"):
            await nc.publish(self.subject(self.provider_id, "linkdefs.put"), payload)
        await nc.flush()

    async def delete_link(self, nc: Any, source_id: str, name: str = "default") -> None:
        definition = self.link_definition(source_id, {}, name=name)
        self.links.pop((source_id, name), None)
        await nc.publish(
            self.subject(self.provider_id, "linkdefs.del"), json.dumps(definition).encode()
        )
        await nc.flush()

    async def health(self, nc: Any, timeout: float = 5.0) -> dict[str, Any]:
        reply = await nc.request(self.subject(self.provider_id, "health"), b"", timeout=timeout)
        report: dict[str, Any] = json.loads(reply.data)
        return report

    async def update_config(self, nc: Any, config: dict[str, str]) -> None:
        await nc.publish(
            self.subject(self.provider_id, "config.update"), json.dumps(config).encode()
        )
        await nc.flush()

    async def shutdown(self, nc: Any, timeout: float = SHUTDOWN_WINDOW) -> bytes:
        """Ask for shutdown; returns the reply (raises nats TimeoutError past the window)."""
        body = json.dumps({"host_id": self.host_id}).encode()
        reply = await nc.request(
            self.subject(self.provider_id, "default.shutdown"), body, timeout=timeout
        )
        data: bytes = reply.data
        return data


@dataclass(frozen=True)
class HostStop:
    """How a host-style stop went: the shutdown reply (None if none came in the window).

    The window is timed as the host times it: the shutdown request's own NATS timeout, so a
    reply here means the host would have had it too. `seconds_to_reply` adds this process's
    scheduling on top and is for reports, not for asserting the contract."""

    reply: bytes | None
    seconds_to_reply: float


class ProviderProcess:
    """The provider as a child process, started the way a host starts it.

    `command` is the provider executable (extracted from its archive: no arguments, working
    directory inherited, as the host runs it) or, by default, `python -m provider` from this
    checkout.
    """

    def __init__(
        self,
        host: LatticeHost,
        log_file: IO[bytes] | None = None,
        command: Sequence[str] = SOURCE_COMMAND,
        **host_data: Any,
    ):
        self.host = host
        self.host_data = host.host_data(**host_data)
        self.command = tuple(command)
        self._log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # The host clears the environment (only RUST_LOG and OTEL_* pass); so do we.
        environment = {k: v for k, v in os.environ.items() if k.startswith(("RUST_LOG", "OTEL_"))}
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=self._log_file or subprocess.DEVNULL,
            env=environment,
            cwd=REPO_ROOT if self.command == SOURCE_COMMAND else None,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(encode_host_data(self.host_data))
        self.process.stdin.close()

    async def wait_healthy(self, nc: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll health until the provider answers (it is subscribed by then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"provider exited with {self.process.returncode}")
            try:
                return await self.host.health(nc, timeout=0.5)
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def stop_like_host(self, nc: Any) -> HostStop:
        """The host's stop: the shutdown request, then SIGKILL as soon as the reply arrives
        or the 300 ms window ends."""
        started = time.perf_counter()
        try:
            reply: bytes | None = await self.host.shutdown(nc)
        except (TimeoutError, nats.errors.Error):
            reply = None
        elapsed = time.perf_counter() - started
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()
        return HostStop(reply, elapsed)

    def wait_exit(self, timeout: float = 5.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
