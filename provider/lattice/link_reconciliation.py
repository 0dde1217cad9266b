"""Links the lattice holds for this provider that it missed while starting, or while its
lattice connection was down (sans-IO).

A 1.x host hands a provider the links that exist when it spawns it (HostData) and publishes
each later put or delete once; one published before the provider has subscribed is lost for
good. Once subscribed, the runtime asks the lattice for its links (`link.get` on the control
interface: each link's source, name and target, with config *names*, never values) and
compares:
- a link the lattice has and this provider lacks was put while it started (or was cut off).
  One whose config names no secret is applied from the named configs (`config.get`, merged in
  order, as a host merges them). One that names a secret only a host can hand over, sealed,
  and it does so in HostData when it restarts the provider, so the runtime exits for that —
  once for a given set of links (`RestartMemo`): a link the host cannot resolve would never
  arrive, and is logged;
- a link this provider had before asking that the lattice no longer has, and that was neither
  put nor deleted since, was deleted while it started (or was cut off): deleted here too.

The same comparison runs again each time the lattice connection comes back after an outage:
NATS delivers nothing published while a subscriber is away.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LinkKey = tuple[str, str]  # (source id, link name)

RESTART_MEMO_SECONDS = 120.0  # a restart for the same links within this long is not repeated


def link_get_subject(lattice: str) -> str:
    return f"wasmbus.ctl.v1.{lattice}.link.get"


def config_get_subject(lattice: str, name: str) -> str:
    return f"wasmbus.ctl.v1.{lattice}.config.get.{name}"


SECRET_PREFIX = "SECRET"  # a config name that is a secret reference (the host's rule)


def lattice_links(reply: bytes, provider_id: str) -> dict[LinkKey, dict[str, Any]] | None:
    """The links targeting `provider_id` in a `link.get` reply, by (source id, name); None if
    the reply is not one."""
    document = _success(reply)
    links = document.get("response") if document is not None else None
    if not isinstance(links, list):
        return None
    return {
        (str(link.get("source_id")), str(link.get("name") or "default")): link
        for link in links
        if isinstance(link, dict) and link.get("target") == provider_id
    }


def plain_config_names(link: dict[str, Any]) -> list[str] | None:
    """The link's target config names, or None when one is a secret (or they are malformed)."""
    names = link.get("target_config") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    if any(name.startswith(SECRET_PREFIX) for name in names):
        return None
    return list(names)


def config_values(reply: bytes) -> dict[str, str] | None:
    """A `config.get` reply's values; None when it has none (not found, refused, malformed)."""
    document = _success(reply)
    values = document.get("response") if document is not None else None
    if not isinstance(values, dict):
        return None
    return {str(key): str(value) for key, value in values.items()}


def resolved_link(link: dict[str, Any], configs: list[dict[str, str]]) -> dict[str, Any]:
    """The link as a host publishes it: its named configs merged in order (later ones win)."""
    merged: dict[str, str] = {}
    for values in configs:
        merged.update(values)
    return {**link, "source_config": {}, "target_config": merged, "source_secrets": None,
            "target_secrets": None}  # fmt: skip


def _success(reply: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(reply)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("success") is not True:
        return None
    return document


@dataclass(frozen=True)
class Differences:
    missing: frozenset[LinkKey]  # in the lattice, never received here
    gone: frozenset[LinkKey]  # received before asking, no longer in the lattice


def differences(
    lattice: Iterable[LinkKey],
    ours_now: Iterable[LinkKey],
    ours_when_asked: Iterable[LinkKey],
    changed_since_asked: Iterable[LinkKey],
) -> Differences:
    changed, held = set(changed_since_asked), set(lattice)
    missing = held - set(ours_now) - changed
    gone = set(ours_when_asked) - held - changed
    return Differences(frozenset(missing), frozenset(gone))


class RestartMemo:
    """Which links a restart was already made for (a small file in the temporary directory:
    the host clears a provider's environment, and the restarted process is a new one)."""

    def __init__(self, lattice: str, provider_id: str, host_id: str) -> None:
        name = hashlib.sha256(f"{lattice}\0{provider_id}\0{host_id}".encode()).hexdigest()[:24]
        self.path = Path(tempfile.gettempdir()) / "sqldb-postgres-restarts" / f"{name}.json"

    def already_restarted_for(self, missing: frozenset[LinkKey]) -> bool:
        try:
            document = json.loads(self.path.read_text())
            restarted = {tuple(key) for key in document["links"]}
            recent = time.time() - float(document["at"]) < RESTART_MEMO_SECONDS
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return recent and missing <= restarted

    def remember(self, missing: frozenset[LinkKey]) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}")
            temporary.write_text(json.dumps({"links": sorted(missing), "at": time.time()}))
            temporary.replace(self.path)
        except OSError:
            pass  # no memo: at worst one more restart finds the link still missing
