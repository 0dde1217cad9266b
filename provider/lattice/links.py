"""Link definitions as hosts publish them, and the settings a target link carries.

We are the target of a link when `target` is our provider id: the link's `target_config` merged
with its opened `target_secrets` (a secret beats a config key of the same name) is what the
provider's business layer gets. Secrets arrive sealed to our xkey (see `xkeys`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provider.lattice.xkeys import CurveKeyPair, XKeyError


class LinkError(ValueError):
    """A link definition is malformed or its secrets cannot be opened."""


@dataclass(frozen=True)
class LinkDefinition:
    source_id: str
    target: str
    name: str
    wit_namespace: str
    wit_package: str
    interfaces: tuple[str, ...]
    target_config: dict[str, str] = field(repr=False)
    target_secrets: bytes | None = field(repr=False)

    @classmethod
    def from_json(cls, document: Any) -> LinkDefinition:
        if not isinstance(document, dict):
            raise LinkError("a link definition must be a JSON object")
        try:
            source_id = document["source_id"]
            target = document["target"]
        except KeyError as exc:
            raise LinkError(f"link definition lacks {exc}") from None
        config = document.get("target_config") or {}
        if not isinstance(config, dict):
            raise LinkError("target_config must be an object")
        secrets = document.get("target_secrets")
        interfaces = document.get("interfaces") or ()
        if not isinstance(interfaces, list | tuple):
            raise LinkError("interfaces must be a list")
        return cls(
            source_id=str(source_id),
            target=str(target),
            name=str(document.get("name") or "default"),
            wit_namespace=str(document.get("wit_namespace") or ""),
            wit_package=str(document.get("wit_package") or ""),
            interfaces=tuple(str(i) for i in interfaces),
            target_config={str(k): str(v) for k, v in config.items()},
            target_secrets=_secret_bytes(secrets),
        )

    def opened_secrets(
        self, provider_keys: CurveKeyPair | None, host_public_key: str
    ) -> dict[str, str]:
        if not self.target_secrets:
            return {}
        return open_secrets(self.target_secrets, provider_keys, host_public_key)

    def target_values(
        self, provider_keys: CurveKeyPair | None, host_public_key: str
    ) -> dict[str, str]:
        """target_config with the opened target secrets on top (secrets win)."""
        return {**self.target_config, **self.opened_secrets(provider_keys, host_public_key)}


def _secret_bytes(secrets: Any) -> bytes | None:
    if secrets in (None, [], b"", ""):
        return None
    if isinstance(secrets, list) and all(isinstance(b, int) and 0 <= b < 256 for b in secrets):
        return bytes(secrets)
    raise LinkError("target_secrets must be a list of byte values")


def open_secrets(
    sealed: bytes, provider_keys: CurveKeyPair | None, host_public_key: str
) -> dict[str, str]:
    """`{name: {"kind": "String"|"Bytes", "value": ...}}` sealed by the host → name → text."""
    if provider_keys is None or not host_public_key:
        raise LinkError("the link carries secrets but the host gave no xkeys to open them")
    try:
        document = json.loads(provider_keys.open(sealed, host_public_key))
    except XKeyError as exc:
        raise LinkError(f"link secrets: {exc}") from None
    except ValueError:
        raise LinkError("link secrets are not JSON") from None
    if not isinstance(document, dict):
        raise LinkError("link secrets must be a JSON object")
    return {str(name): secret_text(secret) for name, secret in document.items()}


def secret_text(secret: Any) -> str:
    """A secret's value as text (`Bytes` secrets hold byte values and must be UTF-8)."""
    if not isinstance(secret, dict):
        return str(secret)
    value = secret.get("value")
    if secret.get("kind") == "Bytes" and isinstance(value, list):
        try:
            return bytes(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise LinkError("a Bytes secret is not UTF-8 text") from None
    return "" if value is None else str(value)


def seal_secrets(
    secrets: dict[str, str], host_keys: CurveKeyPair, provider_public_key: str
) -> list[int]:
    """What a host puts in `target_secrets` (used by our host shim and tests)."""
    document = {name: {"kind": "String", "value": value} for name, value in secrets.items()}
    return list(host_keys.seal(json.dumps(document).encode(), provider_public_key))
