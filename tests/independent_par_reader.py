"""A second PAR reader, written from the host's rules alone (no code shared with
`provider_archive`): what wasmCloud 1.9's provider-archive and wascap would make of the bytes.

Used to check our writer: if both readers agree, the archive is what a host reads.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

from nacl.signing import VerifyKey


def _unpad_b64url(text: str) -> bytes:
    assert "=" not in text, "JWT segments carry no padding"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _nkey_raw(public_key: str, first_letter: str) -> bytes:
    assert public_key.startswith(first_letter), public_key
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    body, crc = raw[:-2], raw[-2:]
    # CRC-16/XMODEM, bit by bit (no table, no binascii): an independent check.
    value = 0
    for byte in body:
        value ^= byte << 8
        for _ in range(8):
            value = (value << 1) ^ 0x1021 if value & 0x8000 else value << 1
            value &= 0xFFFF
    assert crc == value.to_bytes(2, "little"), "nkey checksum"
    assert len(body) == 33
    return body[1:]


def read(data: bytes) -> dict[str, Any]:
    """Members (in order), claims, header and verdicts; asserts the format rules."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    members: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        assert not tar.pax_headers, "no PAX global header"
        for member in tar:
            assert member.isfile(), f"{member.name}: only regular files"
            assert "/" not in member.name, f"{member.name}: flat entries only"
            file = tar.extractfile(member)
            assert file is not None
            members.append((member.name, file.read()))
    # GNU format: every header block carries the GNU magic "ustar  \0".
    assert data[257:265] == b"ustar  \x00", "GNU tar headers"
    files = dict(members)
    token = files["claims.jwt"].decode("ascii")
    assert not token.endswith("\n"), "no trailing newline after the token"
    header_b64, claims_b64, signature_b64 = token.split(".")
    header_bytes = _unpad_b64url(header_b64)
    claims = json.loads(_unpad_b64url(claims_b64))
    issuer = _nkey_raw(claims["iss"], "A")
    _nkey_raw(claims["sub"], "V")
    VerifyKey(issuer).verify(f"{header_b64}.{claims_b64}".encode(), _unpad_b64url(signature_b64))
    hashes = claims["wascap"]["target_hashes"]
    for name, content in files.items():
        if name == "claims.jwt":
            continue
        key = "world.wasm" if name == "world.wasm" else name.rsplit(".", 1)[0]
        expected = hashlib.sha256(content).hexdigest().upper()
        assert hashes[key] == expected, f"hash of {name}"
    return {
        "names": [name for name, _ in members],
        "header": header_bytes,
        "claims": claims,
        "files": files,
    }
