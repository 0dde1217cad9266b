"""The oldest glibc an executable runs on: the highest `GLIBC_x.y` version that it or any
library bundled in it requires (`objdump -p`'s version references; the file sections below
are I/O, `required_glibc` is the whole decision).

A 1.x host image's glibc must be at least this: debian-12-slim has 2.36, the wolfi-based
images 2.41. A onefile executable is the bootloader (an ELF) with an archive appended; the
archive's binaries are read with PyInstaller's own reader.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

GlibcVersion = tuple[int, ...]
OLDEST_HOST_GLIBC: GlibcVersion = (2, 36)  # debian-12-slim, the older 1.x host images
ELF_MAGIC = b"\x7fELF"
_REQUIRED = re.compile(r"\bGLIBC_(\d+(?:\.\d+)+)\b")


def required_glibc(objdump_private_headers: str) -> GlibcVersion | None:
    """The highest glibc version named in the 'Version References' section of
    `objdump -p`'s output (what the file requires; what it defines is not counted)."""
    _, found, references = objdump_private_headers.partition("Version References:")
    if not found:
        return None
    versions = [
        tuple(int(part) for part in m.group(1).split(".")) for m in _REQUIRED.finditer(references)
    ]
    return max(versions, default=None)


def version_text(version: GlibcVersion | None) -> str:
    return "none" if version is None else ".".join(map(str, version))


def highest(versions: Iterable[GlibcVersion | None]) -> GlibcVersion | None:
    return max((v for v in versions if v is not None), default=None)


def elf_floor(path: Path) -> GlibcVersion | None:
    """One ELF file's requirement (objdump reads either architecture's ELF)."""
    text = subprocess.run(["objdump", "-p", str(path)], check=True, capture_output=True,
                          text=True).stdout  # fmt: skip
    return required_glibc(text)


def executable_floor(executable: Path) -> GlibcVersion | None:
    """The onefile executable's floor: its bootloader's and every bundled ELF's."""
    from PyInstaller.archive.readers import CArchiveReader  # type: ignore[import-untyped]

    floors = [elf_floor(executable)]
    archive = CArchiveReader(str(executable))
    with tempfile.TemporaryDirectory(prefix="glibc-floor-") as scratch:
        for name, entry in archive.toc.items():
            if entry[-1] != "b":  # binaries: extension modules and shared libraries
                continue
            data = archive.extract(name)
            if not data or not data.startswith(ELF_MAGIC):
                continue
            path = Path(scratch, "binary")
            path.write_bytes(data)
            floors.append(elf_floor(path))
    return highest(floors)
