"""The release archive (`make release-par`): both Linux targets, each a real executable for
its machine, within the oldest 1.x host image's glibc, and signed so that a changed byte in
either is refused. The aarch64 executable itself runs the executable suite under qemu-user
(`make release-test`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provider_archive.archive import ArchiveError, read_archive
from provider_archive.glibc_floor import OLDEST_HOST_GLIBC, executable_floor, version_text
from tests import independent_par_reader
from tests.archive_edits import Change, retarred

RELEASE_PAR = Path(os.environ.get("PROVIDER_PAR", "build/release/sqldb-postgres.par"))
TARGETS = {"x86_64-linux": 62, "aarch64-linux": 183}  # ELF e_machine: x86-64, AArch64


@pytest.fixture(scope="module")
def release() -> bytes:
    return RELEASE_PAR.read_bytes()


def test_the_independent_reader_accepts_both_targets(release: bytes) -> None:
    independent = independent_par_reader.read(release)
    assert {f"{target}.bin" for target in TARGETS} <= set(independent["names"])
    assert "world.wasm" in independent["names"]
    for target, machine in TARGETS.items():
        binary = independent["files"][f"{target}.bin"]
        assert binary[:4] == b"\x7fELF"
        assert int.from_bytes(binary[18:20], "little") == machine, target
        assert read_archive(release, target=target).binaries[target] == binary


def test_each_target_runs_on_the_oldest_host_image(release: bytes, tmp_path: Path) -> None:
    for target in TARGETS:
        path = tmp_path / target
        path.write_bytes(read_archive(release, target=target).binaries[target])
        floor = executable_floor(path)
        print(f"\n{target}: {path.stat().st_size / 1e6:.1f} MB, glibc >= {version_text(floor)}")
        assert floor is not None and floor <= OLDEST_HOST_GLIBC, target


def _flip_last_byte(member: str) -> Change:
    def change(name: str, content: bytes) -> tuple[str, bytes]:
        return name, content[:-1] + bytes([content[-1] ^ 1]) if name == member else content

    return change


def test_a_tampered_aarch64_binary_is_refused(release: bytes) -> None:
    tampered = retarred(release, _flip_last_byte("aarch64-linux.bin"))
    with pytest.raises(AssertionError, match=r"hash of aarch64-linux\.bin"):
        independent_par_reader.read(tampered)
    with pytest.raises(ArchiveError, match="'aarch64-linux'"):
        read_archive(tampered, target="aarch64-linux")
    # The other target's host loads only its own binary, and that one is intact.
    assert read_archive(tampered, target="x86_64-linux").binaries
