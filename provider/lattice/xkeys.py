"""NATS curve keys ("xkeys") and the sealed boxes wasmCloud hosts send secrets in.

Encoding as in the NATS nkeys library: a key is base32 (no padding) of prefix byte(s), 32 raw
bytes and a CRC-16 (XMODEM, little-endian). A curve seed starts `SX`, a public curve key `X`.
A sealed message is `b"xkv1"` + 24-byte nonce + NaCl box (X25519-XSalsa20-Poly1305) from the
sender's private key to the recipient's public key. The Python `nkeys` release on PyPI (0.2.1)
has no curve keys, so the encoding lives here; the cryptography is PyNaCl's.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

PREFIX_SEED = 18 << 3  # 'S'
PREFIX_CURVE = 23 << 3  # 'X'
XKEY_VERSION = b"xkv1"
NONCE_SIZE = 24


class XKeyError(ValueError):
    """A key or sealed message is malformed, or cannot be opened with the keys at hand."""


def _crc16(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0).to_bytes(2, "little")


def _b32decode(text: str) -> bytes:
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise XKeyError(f"not a NATS key: {exc}") from None


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _checked(text: str) -> bytes:
    raw = _b32decode(text)
    if len(raw) < 4 or _crc16(raw[:-2]) != raw[-2:]:
        raise XKeyError("NATS key checksum mismatch")
    return raw[:-2]


def encode_public(raw_public: bytes) -> str:
    body = bytes([PREFIX_CURVE]) + raw_public
    return _b32encode(body + _crc16(body))


def decode_public(public_key: str) -> bytes:
    body = _checked(public_key)
    if body[0] != PREFIX_CURVE or len(body) != 33:
        raise XKeyError("not a public curve (X...) key")
    return body[1:]


def encode_seed(raw_private: bytes) -> str:
    body = bytes([PREFIX_SEED | PREFIX_CURVE >> 5, (PREFIX_CURVE & 31) << 3]) + raw_private
    return _b32encode(body + _crc16(body))


def decode_seed(seed: str) -> bytes:
    body = _checked(seed)
    if len(body) != 34 or body[0] & 0xF8 != PREFIX_SEED:
        raise XKeyError("not a NATS seed")
    prefix = (body[0] & 7) << 5 | (body[1] & 0xF8) >> 3
    if prefix != PREFIX_CURVE:
        raise XKeyError("not a curve (SX...) seed")
    return body[2:]


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
