"""The text form of NATS nkeys: base32 (no padding) of prefix byte(s), 32 raw bytes, CRC-16.

A public key is `prefix ‖ raw ‖ crc`; a seed is `b1 ‖ b2 ‖ raw ‖ crc` with
`b1 = (18 << 3) | (prefix >> 5)` and `b2 = (prefix & 31) << 3`. The CRC is XMODEM (init 0),
little-endian. The roles (curve `X`, account `A`, service `V`, ...) are the callers'; the PyPI
`nkeys` 0.2.1 knows neither curve nor service prefixes, so the encoding lives here.
"""

from __future__ import annotations

import base64
import binascii

PREFIX_SEED = 18 << 3  # 'S'
RAW_KEY_SIZE = 32


class NKeyError(ValueError):
    """Not a well-formed nkey of the expected role."""


def _crc16(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0).to_bytes(2, "little")


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _checked_body(text: str) -> bytes:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise NKeyError(f"not a NATS key: {exc}") from None
    if len(raw) < 4 or _crc16(raw[:-2]) != raw[-2:]:
        raise NKeyError("NATS key checksum mismatch")
    return raw[:-2]


def encode_public(prefix: int, raw_public: bytes) -> str:
    body = bytes([prefix]) + raw_public
    return _b32encode(body + _crc16(body))


def decode_public(text: str, prefix: int, role: str) -> bytes:
    body = _checked_body(text)
    if len(body) != 1 + RAW_KEY_SIZE or body[0] != prefix:
        raise NKeyError(f"not a public {role} key")
    return body[1:]


def encode_seed(prefix: int, raw_seed: bytes) -> str:
    body = bytes([PREFIX_SEED | prefix >> 5, (prefix & 31) << 3]) + raw_seed
    return _b32encode(body + _crc16(body))


def seed_prefix(text: str) -> int:
    """The role prefix a seed was made for (raises NKeyError if it is no seed)."""
    body = _checked_body(text)
    if len(body) != 2 + RAW_KEY_SIZE or body[0] & 0xF8 != PREFIX_SEED:
        raise NKeyError("not a NATS seed")
    return (body[0] & 7) << 5 | (body[1] & 0xF8) >> 3


def decode_seed(text: str, prefix: int, role: str) -> bytes:
    if seed_prefix(text) != prefix:
        raise NKeyError(f"not a {role} seed")
    return _checked_body(text)[2:]
