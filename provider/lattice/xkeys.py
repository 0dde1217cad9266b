"""NATS curve keys ("xkeys") and the sealed boxes wasmCloud hosts send secrets in.

Keys in the nkey text form (`nkey_text`): a curve seed starts `SX`, a public curve key `X`.
A sealed message is `b"xkv1"` + 24-byte nonce + NaCl box (X25519-XSalsa20-Poly1305) from the
sender's private key to the recipient's public key. The cryptography is PyNaCl's.
"""

from __future__ import annotations

import secrets

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from provider.lattice import nkey_text

PREFIX_CURVE = 23 << 3  # 'X'
XKEY_VERSION = b"xkv1"
NONCE_SIZE = 24


class XKeyError(ValueError):
    """A key or sealed message is malformed, or cannot be opened with the keys at hand."""


def encode_public(raw_public: bytes) -> str:
    return nkey_text.encode_public(PREFIX_CURVE, raw_public)


def decode_public(public_key: str) -> bytes:
    try:
        return nkey_text.decode_public(public_key, PREFIX_CURVE, "curve (X...)")
    except nkey_text.NKeyError as exc:
        raise XKeyError(str(exc)) from None


def encode_seed(raw_private: bytes) -> str:
    return nkey_text.encode_seed(PREFIX_CURVE, raw_private)


def decode_seed(seed: str) -> bytes:
    try:
        return nkey_text.decode_seed(seed, PREFIX_CURVE, "curve (SX...)")
    except nkey_text.NKeyError as exc:
        raise XKeyError(str(exc)) from None


class CurveKeyPair:
    """An xkey pair; `seed` is secret and never shown in `repr`."""

    def __init__(self, raw_private: bytes) -> None:
        self._private = PrivateKey(raw_private)

    @classmethod
    def from_seed(cls, seed: str) -> CurveKeyPair:
        return cls(decode_seed(seed))

    @classmethod
    def generate(cls) -> CurveKeyPair:
        return cls(secrets.token_bytes(32))

    @property
    def seed(self) -> str:
        return encode_seed(bytes(self._private))

    @property
    def public_key(self) -> str:
        return encode_public(bytes(self._private.public_key))

    def __repr__(self) -> str:
        return f"CurveKeyPair(public_key={self.public_key!r})"

    def seal(self, message: bytes, recipient_public_key: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_SIZE)
        box = Box(self._private, PublicKey(decode_public(recipient_public_key)))
        return XKEY_VERSION + nonce + box.encrypt(message, nonce).ciphertext

    def open(self, sealed: bytes, sender_public_key: str) -> bytes:
        if not sealed.startswith(XKEY_VERSION) or len(sealed) < len(XKEY_VERSION) + NONCE_SIZE:
            raise XKeyError("sealed message lacks the xkv1 header")
        nonce = sealed[len(XKEY_VERSION) : len(XKEY_VERSION) + NONCE_SIZE]
        box = Box(self._private, PublicKey(decode_public(sender_public_key)))
        try:
            return box.decrypt(sealed[len(XKEY_VERSION) + NONCE_SIZE :], nonce)
        except CryptoError:
            raise XKeyError("sealed message cannot be opened with these keys") from None
