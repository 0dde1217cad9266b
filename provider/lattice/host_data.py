"""HostData: what a wasmCloud host tells a provider at start (base64 JSON line on stdin)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any


class HostDataError(ValueError):
    """The host data cannot be read; the message says why (never echoing secrets)."""


@dataclass(frozen=True)
class HostData:
    lattice_rpc_url: str = "127.0.0.1:4222"
    lattice_rpc_prefix: str = "default"
    provider_key: str = "sqldb-postgres"
    host_id: str = ""
    link_name: str = "default"
    lattice_rpc_user_jwt: str = field(default="", repr=False)
    lattice_rpc_user_seed: str = field(default="", repr=False)
    instance_id: str = ""
    env_values: dict[str, str] = field(default_factory=dict)
    link_definitions: list[dict[str, Any]] = field(default_factory=list)
    cluster_issuers: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)
    host_xkey_public_key: str = ""
    provider_xkey_private_key: str = field(default="", repr=False)
    default_rpc_timeout_ms: int | None = None
    structured_logging: bool = False
    log_level: str | None = None
    otel_config: dict[str, Any] = field(default_factory=dict)

    @property
    def lattice(self) -> str:
        return self.lattice_rpc_prefix

    @property
    def nats_url(self) -> str:
        url = self.lattice_rpc_url or "127.0.0.1:4222"
        return url if "://" in url else f"nats://{url}"

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> HostData:
        known = {name for name in cls.__dataclass_fields__}
        values = {k: v for k, v in document.items() if k in known and v is not None}
        for mapping in ("env_values", "config", "secrets", "otel_config"):
            if mapping in values and not isinstance(values[mapping], dict):
                raise HostDataError(f"host data field {mapping} must be an object")
        if "link_definitions" in values and not isinstance(values["link_definitions"], list):
            raise HostDataError("host data field link_definitions must be a list")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def parse_host_data(line: str | bytes) -> HostData:
    """Decode the `base64(JSON(HostData))` line a host writes to the provider's stdin."""
    text = line.strip()
    if not text:
        raise HostDataError("no host data on stdin")
    try:
        document = json.loads(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise HostDataError(f"host data is not base64-encoded JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HostDataError("host data must be a JSON object")
    return HostData.from_json(document)


def encode_host_data(host_data: HostData) -> bytes:
    """The line a host writes (used by our host shim and tests)."""
    return base64.b64encode(json.dumps(host_data.to_json()).encode()) + b"\r\n"
