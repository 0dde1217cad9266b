"""The provider's NATS connection as a secured lattice needs it: the host's credentials, TLS,
a bounded first connect, fatal errors that end the process, permission denials made visible.

A host restarts a provider whose process ended, with fresh HostData (a rotated JWT, new links),
so a provider that cannot serve must exit rather than linger: until the first connect succeeds,
failures are retried for `NATS_CONNECT_TIMEOUT` seconds (provider config, default 15), then the
provider exits with one line naming the cause. After that it reconnects forever through outages,
except when the server refuses its credentials (a revoked or expired user) or closes the
connection for good. HostData has no TLS settings, so the CA comes from the provider config
(`NATS_TLS_CA`: PEM text or a file path) or the system store; verification is always on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nkeys  # type: ignore[import-untyped]
from nats.aio.client import Client, RawCredentials
from nats.errors import AuthorizationError, NoServersError
from nats.errors import Error as NatsError

from provider.lattice.host_data import HostData
from provider.nats.data_connection import (
    MAX_OUTSTANDING_PINGS,
    PING_INTERVAL,
    Credentials,
    DataConnection,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_KEY = "NATS_CONNECT_TIMEOUT"
# `nats-py` runs the wRPC subjects on the main client too (the lean data path's fallback).
DATA_PATH_KEY = "WRPC_DATA_PATH"
TLS_CA_KEY = "NATS_TLS_CA"
DEFAULT_CONNECT_TIMEOUT = 15.0
MAX_REMEMBERED_DENIALS = 1024

# nats-server: `Permissions Violation for Subscription to "x" using queue "q"` / `Publish to "x"`
# (nats-py lower-cases the text of every -ERR but the authorization ones).
_VIOLATION = re.compile(
    r'permissions violation for (subscription|publish) to "([^"]*)"', re.IGNORECASE
)
# Errors with which the server refuses the credentials themselves.
_REFUSED_CREDENTIALS = (
    "authorization violation",
    "authentication expired",
    "authentication revoked",
)


class LatticeUnavailable(RuntimeError):
    """The provider cannot serve on this lattice; the text is the one-line cause."""


@dataclass(frozen=True)
class PermissionDenial:
    operation: str  # "subscribe" or "publish"
    subject: str


def permission_denial(error_text: str) -> PermissionDenial | None:
    found = _VIOLATION.search(error_text)
    if found is None:
        return None
    operation = "subscribe" if found.group(1).lower() == "subscription" else "publish"
    return PermissionDenial(operation, found.group(2))


# Control-interface requests the provider makes only to recover links it missed while starting
# or cut off
# (`link_reconciliation`); an account without them still serves everything else.
OPTIONAL_PUBLISH = "wasmbus.ctl."


def subject_family(subject: str) -> str:
    """Per-call subjects (inboxes, KV keys) logged as one family, not one line per call.
    nats-py lower-cases the server's text, so families are matched case-insensitively."""
    tokens = subject.split(".")
    head = tokens[0].upper()
    if head == "_INBOX":  # per-call tokens starred, the shape kept: `_INBOX.*.results`
        if len(tokens) < 3:
            return "_INBOX.*" if len(tokens) == 2 else "_INBOX"
        return ".".join(["_INBOX", *("*" * (len(tokens) - 2)), tokens[-1]])
    if head in ("$KV", "$JS") and len(tokens) > 2:
        return f"{head}.{tokens[1].upper() if head == '$JS' else tokens[1]}.>"
    return subject


def refuses_credentials(error: BaseException) -> bool:
    return isinstance(error, AuthorizationError) or any(
        phrase in str(error).lower() for phrase in _REFUSED_CREDENTIALS
    )


def describe(error: BaseException | None) -> str:
    """One line naming the cause, never the credentials."""
    if error is None:
        return "no answer from the server"
    if refuses_credentials(error):
        text = str(error).lower()
        if "expired" in text:
            return "the server refused the credentials: the user JWT has expired"
        if "revoked" in text:
            return "the server refused the credentials: the user JWT was revoked"
        return (
            "the server refused the credentials (authorization violation: a wrong seed, an "
            "expired, revoked or unknown user JWT, or none where one is required)"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS: the server's certificate is not trusted ({error.verify_message}); set "
            f"{TLS_CA_KEY} in the provider config to its CA"
        )
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, NoServersError):
        return "no server could be reached"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def tls_context(config: dict[str, str]) -> ssl.SSLContext:
    """Verification always on; the system store, plus `NATS_TLS_CA` when given."""
    context = ssl.create_default_context()
    ca = config.get(TLS_CA_KEY, "").strip()
    if ca:
        try:
            if ca.startswith("-----BEGIN"):
                context.load_verify_locations(cadata=ca)
            else:
                context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise LatticeUnavailable(f"{TLS_CA_KEY} cannot be loaded: {exc}") from None
    return context


def connect_window(config: dict[str, str]) -> float:
    try:
        seconds = float(config.get(CONNECT_TIMEOUT_KEY, DEFAULT_CONNECT_TIMEOUT))
    except ValueError:
        return DEFAULT_CONNECT_TIMEOUT
    return seconds if seconds > 0 else DEFAULT_CONNECT_TIMEOUT


def credentials(host_data: HostData) -> RawCredentials | None:
    """A .creds document from the host's JWT and seed, as nats-py takes it."""
    if not (host_data.lattice_rpc_user_jwt and host_data.lattice_rpc_user_seed):
        return None
    try:  # found now, in one line, rather than as a traceback from inside the first connect
        nkeys.from_seed(host_data.lattice_rpc_user_seed.encode())
    except Exception:
        raise LatticeUnavailable(
            "HostData's lattice_rpc_user_seed is not a valid NATS user seed"
        ) from None
    return RawCredentials(
        "-----BEGIN NATS USER JWT-----\n"
        f"{host_data.lattice_rpc_user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{host_data.lattice_rpc_user_seed}\n"
        "------END USER NKEY SEED------\n"
    )


class LatticeConnection:
    """Owns the NATS client: connect, watch its errors, report denials and fatal causes."""

    def __init__(self, host_data: HostData, on_fatal: Callable[[str], None]) -> None:
        self.host_data = host_data
        self.client = Client()
        self.data: DataConnection | None = None  # the wRPC data path's own connection
        self.denials: set[PermissionDenial] = set()
        self.denied_replies: str | None = None  # the reply subjects' shape, once one is denied
        self._logged: set[tuple[str, str]] = set()
        self._on_fatal = on_fatal
        self._connected_once = False
        self._closing = False
        self._last_error: BaseException | None = None
        # A refusal of the credentials or of TLS says more than the resets that follow it.
        self._decisive_error: BaseException | None = None
        self._retry_causes: set[str] = set()
        # Told when the connection is back after an outage (what was published meanwhile on
        # subjects we listen to never reached us).
        self.on_reconnect: Callable[[], None] | None = None

    async def connect(self) -> Client:
        window = connect_window(self.host_data.config)
        options: dict[str, Any] = {
            "servers": [self.host_data.nats_url],
            "name": f"provider {self.host_data.provider_key}",
            # Reconnect forever after the first success; the first connect is bounded below.
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": min(5.0, window),
            # A silent server is noticed within about 3 x PING_INTERVAL (nats-py's default:
            # 2 minutes apart, so up to 6 minutes).
            "ping_interval": PING_INTERVAL,
            "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
            "error_cb": self._on_error,
            "closed_cb": self._on_closed,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnect,
            "tls": tls_context(self.host_data.config),
        }
        creds = credentials(self.host_data)
        if creds is not None:
            options["user_credentials"] = creds
        try:
            await asyncio.wait_for(self.client.connect(**options), window)
        except (TimeoutError, OSError, NatsError) as exc:
            cause = describe(self._decisive_error or self._last_error or exc)
            raise LatticeUnavailable(
                f"cannot connect to the lattice at {self.host_data.nats_url} within "
                f"{window:g} s: {cause}"
            ) from None
        self._connected_once = True
        return self.client

    async def open_data_path(self) -> Any:
        """The connection the wRPC server runs on: its own lean one (`data_connection`), with
        the same server, credentials and TLS; or the main client where the provider config
        says `WRPC_DATA_PATH=nats-py`. Call after `connect`."""
        if self.host_data.config.get(DATA_PATH_KEY, "").strip().lower() == "nats-py":
            return self.client
        try:
            self.data = await DataConnection.open(
                self.host_data.nats_url,
                credentials=Credentials(
                    self.host_data.lattice_rpc_user_jwt, self.host_data.lattice_rpc_user_seed
                ),
                tls=tls_context(self.host_data.config),
                name=f"provider {self.host_data.provider_key} wrpc",
                connect_timeout=min(5.0, connect_window(self.host_data.config)),
                on_error=self._on_data_path_error,
            )
        except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
            raise LatticeUnavailable(
                f"cannot open the wRPC data connection to {self.host_data.nats_url}: "
                f"{describe(exc)}"
            ) from None
        return self.data

    def _on_data_path_error(self, text: str) -> None:
        """A -ERR on the data connection: denials are recorded like the main client's."""
        denial = permission_denial(text)
        if denial is not None:
            self._record_denial(denial)
        elif refuses_credentials(Exception(text)) and self._connected_once and not self._closing:
            self._on_fatal(f"the lattice connection was refused: {describe(Exception(text))}")
        else:
            log.warning("wRPC data connection error", extra={"cause": text})

    async def close(self) -> None:
        self._closing = True
        if self.data is not None:
            await self.data.close()
        if not self.client.is_closed:
            await self.client.close()

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        denial = permission_denial(str(error))
        if denial is not None:
            self._record_denial(denial)
            return
        if not self._connected_once:
            if refuses_credentials(error) or isinstance(error, ssl.SSLError):
                self._decisive_error = error
            cause = describe(error)
            if cause not in self._retry_causes:  # once per cause, not a line per attempt
                self._retry_causes.add(cause)
                log.warning("lattice connect failed: retrying", extra={"cause": cause})
            return
        if refuses_credentials(error) and not self._closing:
            self._on_fatal(f"the lattice connection was refused: {describe(error)}")
            return
        log.warning("lattice connection error", extra={"cause": describe(error)})

    def _record_denial(self, denial: PermissionDenial) -> None:
        if denial.operation == "publish" and denial.subject.lower().startswith(OPTIONAL_PUBLISH):
            self._note_optional_denial(denial)
            return
        if denial.operation == "publish" and denial.subject.upper().startswith("_INBOX."):
            self.denied_replies = subject_family(denial.subject)  # no call can be answered
        if len(self.denials) < MAX_REMEMBERED_DENIALS:
            self.denials.add(denial)
        key = (denial.operation, subject_family(denial.subject))
        if key in self._logged or len(self._logged) >= MAX_REMEMBERED_DENIALS:
            return
        self._logged.add(key)
        log.error(
            "permission denied by the lattice's NATS account",
            extra={"operation": denial.operation, "subject": key[1]},
        )

    def _note_optional_denial(self, denial: PermissionDenial) -> None:
        """A request the provider can do without (asking the lattice for its links): one
        info line, no error, nothing in health."""
        key = ("optional", denial.subject.lower().rsplit(".", 1)[0])
        if key in self._logged or len(self._logged) >= MAX_REMEMBERED_DENIALS:
            return
        self._logged.add(key)
        log.info("the lattice's NATS account does not permit an optional request: links put "
                 "while the provider starts are recovered only from HostData",
                 extra={"subject": denial.subject})  # fmt: skip

    async def _on_closed(self) -> None:
        if self._connected_once and not self._closing:
            cause = describe(self.client.last_error or self._last_error)
            self._on_fatal(f"the lattice connection closed: {cause}")

    async def _on_disconnected(self) -> None:
        if self._connected_once and not self._closing:
            log.warning("lattice connection lost: reconnecting")

    async def _on_reconnect(self) -> None:
        log.info("lattice connection restored")
        if self.on_reconnect is not None and not self._closing:
            self.on_reconnect()
