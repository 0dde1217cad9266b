"""Provider archives (PAR) as wasmCloud 1.x reads and wash writes them, sans-IO: bytes in and out.

A PAR is a plain tar, gzipped or not (a reader looks only at the first two bytes), of flat
regular files in GNU format: `claims.jwt`, `world.wasm` (the WIT package as a component) and
one `<target>.bin` per target (`x86_64-linux`, ...). The claims carry the SHA-256 of each file,
upper-case hex, keyed by target and by `world.wasm`. Each entry is classified by its path's
file stem, as the host does. The reader refuses what a host (or `wash push`/`inspect`) refuses
or panics on, with the host's wording where it has any.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import platform
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from provider_archive.claims import ClaimsError, ProviderClaims, decode_claims, sign_claims
from provider_archive.signing_keys import NKeyPair

CLAIMS_STEM = "claims"
WORLD_STEM = "world"
WORLD_HASH_KEY = "world.wasm"  # the world's key in target_hashes is its full name
GZIP_MAGIC = b"\x1f\x8b"


class ArchiveError(ValueError):
    """An archive a wasmCloud host would refuse (or crash on)."""


def sha256_upper(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


def host_target(machine: str | None = None, system: str | None = None) -> str:
    """The target a host on this machine loads: Rust's `{ARCH}-{OS}` (no libc part)."""
    arch = (machine or platform.machine()).lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    os_name = (system or platform.system()).lower()
    return f"{arch}-{'macos' if os_name == 'darwin' else os_name}"


def rust_file_stem(path: str) -> str | None:
    """`std::path::Path::file_stem` for a Unix path (None where Rust has none)."""
    components = [part for part in path.split("/") if part and part != "."]
    if not components or components[-1] == "..":
        return None
    name = components[-1]
    if name.startswith(".") and name.count(".") == 1:
        return name
    stem, dot, _ = name.rpartition(".")
    return stem if dot else name


@dataclass(frozen=True)
class ProviderArchive:
    """What a PAR holds: the signed claims token, the world and the binaries by target."""

    token: str
    claims: ProviderClaims
    binaries: Mapping[str, bytes] = field(default_factory=dict)
    world: bytes | None = None


def build_archive(
    template: ProviderClaims,
    binaries: Mapping[str, bytes],
    world: bytes | None,
    issuer: NKeyPair,
    issued_at: int,
) -> ProviderArchive:
    """Hash every file into the claims and sign them (new `jti`/`iat`, as wash re-signs)."""
    if not binaries:
        raise ArchiveError("a provider archive needs at least one binary")
    hashes = {target: sha256_upper(data) for target, data in binaries.items()}
    if world is not None:
        hashes[WORLD_HASH_KEY] = sha256_upper(world)
    token = sign_claims(replace(template, target_hashes=hashes), issuer, issued_at)
    return ProviderArchive(token, decode_claims(token), dict(binaries), world)


def write_archive(archive: ProviderArchive, compress: bool = False) -> bytes:
    """The PAR's bytes: GNU tar of flat files in wash's order, optionally gzipped."""
    entries = [("claims.jwt", archive.token.encode(), 0o644)]
    if archive.world is not None:
        entries.append(("world.wasm", archive.world, 0o644))
    entries += [(f"{target}.bin", data, 0o755) for target, data in archive.binaries.items()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, archive.claims.issued_at
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def _tar_bytes(data: bytes) -> bytes:
    if len(data) < 2:
        raise ArchiveError("Not enough bytes to be a valid PAR file")
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ArchiveError(f"failed to load provider archive: {exc}") from None
    return data


def read_archive(data: bytes, target: str | None = None) -> ProviderArchive:
    """Read and verify a PAR as a host does: with `target`, only that binary is loaded
    (and must be there); without, every binary (what `wash push`/`inspect` load).

    Hashes are checked for what is loaded and for the world. The signature is not checked
    here (a host does not at start); `claims.validate` does that.
    """
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(_tar_bytes(data)), mode="r:") as tar:
            if tar.pax_headers:
                # wash's full loader reads a PAX global header as a binary without a hash.
                raise ArchiveError("the archive has a PAX global header (wash would panic)")
            for member in tar:
                stem = rust_file_stem(member.name)
                if stem is None:
                    raise ArchiveError(f"entry {member.name!r} has no file stem (a host panics)")
                if not member.isfile():
                    raise ArchiveError(
                        f"entry {member.name!r} is not a regular file (a host reads it as an "
                        "empty binary with no hash and panics)"
                    )
                if target is not None and stem not in (CLAIMS_STEM, WORLD_STEM, target):
                    continue
                extracted = tar.extractfile(member)
                files[stem] = extracted.read() if extracted is not None else b""
    except tarfile.TarError as exc:
        raise ArchiveError(f"failed to load provider archive: {exc}") from None
    token_bytes = files.pop(CLAIMS_STEM, None)
    world = files.pop(WORLD_STEM, None)
    if token_bytes is None or not files:
        raise ArchiveError(
            "Not enough files found in provider archive. Is this a complete archive?"
        )
    try:
        claims = decode_claims(token_bytes.decode())
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"UTF8 error: {exc}") from None
    except ClaimsError as exc:
        raise ArchiveError(str(exc)) from None
    for name, binary in files.items():
        expected = claims.target_hashes.get(name)
        if expected is None:
            raise ArchiveError(f"no hash for target '{name}' in the claims (a host panics)")
        if sha256_upper(binary) != expected:
            raise ArchiveError(f"File hash and verify hash do not match for '{name}'")
    if world is not None:
        expected = claims.target_hashes.get(WORLD_HASH_KEY)
        if expected is None:
            raise ArchiveError("WIT interface present but no hash found in claims")
        if sha256_upper(world) != expected:
            raise ArchiveError("WIT interface hash does not match")
    return ProviderArchive(token_bytes.decode(), claims, files, world)


def with_binary(
    archive: ProviderArchive, target: str, binary: bytes, issuer: NKeyPair, issued_at: int
) -> ProviderArchive:
    """`insert`: the archive with one more (or a replaced) target, re-signed."""
    binaries = {**archive.binaries, target: binary}
    return build_archive(archive.claims, binaries, archive.world, issuer, issued_at)
