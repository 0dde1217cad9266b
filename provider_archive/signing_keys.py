"""Ed25519 nkeys that sign provider claims: the issuer (account, `A…`) and subject (service, `V…`).

Where the keys come from follows wash: `WASH_ISSUER_KEY` / `WASH_SUBJECT_KEY` hold a seed or
the path of a file holding one; otherwise a key kept in a keys directory is used, generated
there (with a warning) the first time.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from provider.lattice import nkey_text

PREFIX_ACCOUNT = 0  # 'A', seeds 'SA'
PREFIX_SERVICE = 21 << 3  # 'V', seeds 'SV'


@dataclass(frozen=True)
class Role:
    prefix: int
    name: str  # as wash names key files: <owner>_<name>.nk
    environment_variable: str


ISSUER = Role(PREFIX_ACCOUNT, "account", "WASH_ISSUER_KEY")
SUBJECT = Role(PREFIX_SERVICE, "service", "WASH_SUBJECT_KEY")


class SigningKeyError(ValueError):
    """A key that is not a seed of the expected role."""


class NKeyPair:
    """One signing key; the seed is secret and never shown in `repr`."""

    def __init__(self, role: Role, raw_seed: bytes) -> None:
        self.role = role
        self._signing_key = SigningKey(raw_seed)

    @classmethod
    def generate(cls, role: Role) -> NKeyPair:
        return cls(role, secrets.token_bytes(nkey_text.RAW_KEY_SIZE))

    @classmethod
    def from_seed(cls, role: Role, seed: str) -> NKeyPair:
        try:
            return cls(role, nkey_text.decode_seed(seed.strip(), role.prefix, role.name))
        except nkey_text.NKeyError as exc:
            raise SigningKeyError(f"{role.environment_variable}: {exc}") from None

    @property
    def seed(self) -> str:
        return nkey_text.encode_seed(self.role.prefix, bytes(self._signing_key))

    @property
    def public_key(self) -> str:
        return nkey_text.encode_public(self.role.prefix, bytes(self._signing_key.verify_key))

    def sign(self, message: bytes) -> bytes:
        return bytes(self._signing_key.sign(message).signature)

    def __repr__(self) -> str:
        return f"NKeyPair({self.role.name}, public_key={self.public_key!r})"


def is_public_key(text: str, role: Role) -> bool:
    try:
        nkey_text.decode_public(text, role.prefix, role.name)
    except nkey_text.NKeyError:
        return False
    return True


def verify_signature(public_key: str, role: Role, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` by `public_key`."""
    try:
        raw = nkey_text.decode_public(public_key, role.prefix, role.name)
        VerifyKey(raw).verify(message, signature)
    except (nkey_text.NKeyError, BadSignatureError, ValueError):
        return False
    return True


def key_file_name(owner: str, role: Role) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', owner)}_{role.name}.nk"


def resolve_key(
    role: Role,
    owner: str,
    keys_dir: Path,
    environment: Mapping[str, str] = os.environ,
) -> NKeyPair:
    """The key from its environment variable (seed or file), else from `keys_dir`, else new."""
    given = environment.get(role.environment_variable, "").strip()
    if given:
        if given.startswith("S") and not Path(given).exists():
            return NKeyPair.from_seed(role, given)
        try:
            return NKeyPair.from_seed(role, Path(given).read_text())
        except OSError as exc:
            raise SigningKeyError(
                f"{role.environment_variable} is neither a seed nor a readable file: {exc}"
            ) from None
    path = keys_dir / key_file_name(owner, role)
    if path.exists():
        return NKeyPair.from_seed(role, path.read_text())
    key = NKeyPair.generate(role)
    keys_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(key.seed + "\n")
    print(
        f"warning: no {role.environment_variable}; generated a new {role.name} key in {path} "
        f"({key.public_key}); keep it to sign later versions with the same identity",
        file=sys.stderr,
    )
    return key


def default_owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "user"
