"""Provider claims as wascap writes and reads them: a compact Ed25519 JWT, sans-IO.

`base64url-nopad(header) . base64url-nopad(claims) . base64url-nopad(signature)`, header
exactly `{"typ":"jwt","alg":"Ed25519"}`, the signature by the issuer (account) key over the
ASCII of the first two segments. Field names, order and the error wording follow wascap 0.16
(wasmCloud 1.9): a host decodes the claims without checking the signature; `validate` checks
what `wash inspect` and the secrets backend check (header, issuer, subject, signature, times).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from provider_archive.signing_keys import (
    ISSUER,
    SUBJECT,
    NKeyPair,
    is_public_key,
    verify_signature,
)

HEADER = {"typ": "jwt", "alg": "Ed25519"}
WASCAP_REVISION = 3
JTI_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
JTI_LENGTH = 22  # as nuid's


class ClaimsError(ValueError):
    """A token the host (or wash) would refuse; the text is wascap's where it has one."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ClaimsError(f"Decode error: {exc}") from None


def _json_segment(text: str) -> Any:
    raw = _b64decode(text)
    try:
        return json.loads(raw.decode())
    except UnicodeDecodeError as exc:
        raise ClaimsError(f"UTF8 error: {exc}") from None
    except ValueError as exc:
        raise ClaimsError(f"Serialization error: {exc}") from None


def new_jti() -> str:
    return "".join(secrets.choice(JTI_ALPHABET) for _ in range(JTI_LENGTH))


@dataclass(frozen=True)
class ProviderClaims:
    """The claims of one provider archive (wascap `Claims<CapabilityProvider>`)."""

    issuer: str  # account public key, A…
    subject: str  # service public key, V…
    vendor: str
    name: str | None = None
    version: str | None = None
    revision: int | None = None
    target_hashes: Mapping[str, str] = field(default_factory=dict)
    config_schema: Any | None = None
    jti: str = field(default_factory=new_jti)
    issued_at: int = 0
    expires: int | None = None
    not_before: int | None = None
    wascap_revision: int | None = WASCAP_REVISION

    def to_json(self) -> dict[str, Any]:
        """In wascap's field order, optional fields left out as serde skips them."""
        metadata: dict[str, Any] = {"name": self.name, "vendor": self.vendor}
        if self.revision is not None:
            metadata["rev"] = self.revision
        if self.version is not None:
            metadata["ver"] = self.version
        if self.config_schema is not None:
            metadata["config_schema"] = self.config_schema
        metadata["target_hashes"] = dict(self.target_hashes)
        document: dict[str, Any] = {}
        if self.expires is not None:
            document["exp"] = self.expires
        document |= {"jti": self.jti, "iat": self.issued_at, "iss": self.issuer}
        document["sub"] = self.subject
        if self.not_before is not None:
            document["nbf"] = self.not_before
        document["wascap"] = metadata
        if self.wascap_revision is not None:
            document["wascap_revision"] = self.wascap_revision
        return document

    @classmethod
    def from_json(cls, document: Any) -> ProviderClaims:
        if not isinstance(document, dict):
            raise ClaimsError("Serialization error: the claims are not a JSON object")
        metadata = document.get("wascap")
        if not isinstance(metadata, dict):
            # wascap's loader unwraps the metadata: a host panics on such an archive.
            raise ClaimsError("No metadata found")
        try:
            hashes = metadata["target_hashes"]
            if not isinstance(hashes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()
            ):
                raise TypeError("target_hashes must map strings to strings")
            return cls(
                issuer=_text(document, "iss"),
                subject=_text(document, "sub"),
                vendor=_text(metadata, "vendor"),
                name=_optional(metadata, "name", str),
                version=_optional(metadata, "ver", str),
                revision=_optional(metadata, "rev", int),
                target_hashes=dict(hashes),
                config_schema=metadata.get("config_schema"),
                jti=_text(document, "jti"),
                issued_at=_integer(document, "iat"),
                expires=_optional(document, "exp", int),
                not_before=_optional(document, "nbf", int),
                wascap_revision=_optional(document, "wascap_revision", int),
            )
        except (KeyError, TypeError) as exc:
            raise ClaimsError(f"Serialization error: {exc}") from None


def _text(document: Mapping[str, Any], key: str) -> str:
    value = document[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _integer(document: Mapping[str, Any], key: str) -> int:
    value = document[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key} must be a non-negative integer")
    return value


def _optional(document: Mapping[str, Any], key: str, kind: type) -> Any:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key} must be a {kind.__name__}")
    return value


def sign_claims(claims: ProviderClaims, issuer: NKeyPair, issued_at: int) -> str:
    """The compact token, signed by `issuer`, with a fresh `jti` and `iat` (wash re-signs so)."""
    signed = replace(claims, issuer=issuer.public_key, jti=new_jti(), issued_at=issued_at)
    header = _b64encode(json.dumps(HEADER, separators=(",", ":")).encode())
    body = _b64encode(json.dumps(signed.to_json(), separators=(",", ":")).encode())
    signing_input = f"{header}.{body}"
    return f"{signing_input}.{_b64encode(issuer.sign(signing_input.encode()))}"


def decode_claims(token: str) -> ProviderClaims:
    """What a host does with `claims.jwt`: split, decode the claims; no signature check."""
    segments = token.split(".")
    if len(segments) != 3:
        raise ClaimsError("JWT error: invalid token format")
    return ProviderClaims.from_json(_json_segment(segments[1]))


def _moment(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validate(token: str, now: int) -> ProviderClaims:
    """Everything a careful reader checks: header, issuer, subject, signature, times."""
    segments = token.split(".")
    if len(segments) != 3:
        raise ClaimsError(f"invalid token format, expected 3 segments, found {len(segments)}")
    header = _json_segment(segments[0])
    if not isinstance(header, dict) or header.get("alg") != HEADER["alg"]:
        raise ClaimsError("Invalid JWT algorithm. WASCAP only supports Ed25519")
    if header.get("typ") != HEADER["typ"]:
        raise ClaimsError("JWT error: Invalid header")
    claims = decode_claims(token)
    if not claims.issuer:
        raise ClaimsError("Invalid JWT. WASCAP requires an issuer claim to be present")
    if not claims.subject:
        raise ClaimsError("Invalid JWT. WASCAP requires a sub claim to be present")
    signing_input = f"{segments[0]}.{segments[1]}".encode()
    if not verify_signature(claims.issuer, ISSUER, signing_input, _b64decode(segments[2])):
        raise ClaimsError("signature is not valid")
    if claims.expires is not None and claims.expires < now:
        raise ClaimsError(f"token expired at `{_moment(claims.expires)}`")
    if claims.not_before is not None and claims.not_before > now:
        raise ClaimsError(f"token cannot be used before `{_moment(claims.not_before)}`")
    if not is_public_key(claims.subject, SUBJECT):
        raise ClaimsError(f"the subject {claims.subject} is not a service (V…) public key")
    return claims
