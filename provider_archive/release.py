"""`make release-par`: one signed archive with `x86_64-linux` and `aarch64-linux`.

A 1.x host loads the executable named for its own machine (`{ARCH}-{OS}`), with no fallback,
and wasmCloud's host images are published for amd64 and arm64: an archive without
`aarch64-linux` fails on every arm64 node. The x86-64 executable is `make par`'s (built here,
natively); the aarch64 one is built in an emulated arm64 root (`emulated_root`), from the same
runtime-only requirements, and kept in the cache while its inputs are unchanged. Each target's
glibc floor is checked against the oldest host image's (`glibc_floor`).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from provider_archive.archive import host_target
from provider_archive.build_env import build_requirements, ensure_environment
from provider_archive.emulated_root import EmulatedRoot, RootUnavailable, cache_dir
from provider_archive.executable import REPO_ROOT, build_in
from provider_archive.glibc_floor import (
    OLDEST_HOST_GLIBC,
    GlibcVersion,
    executable_floor,
    version_text,
)

NATIVE_TARGET = "x86_64-linux"
EMULATED_TARGET = "aarch64-linux"
ROOT_PYTHON = "/usr/bin/python3.11"
ROOT_ENV = "/opt/runtime-env"
ROOT_SOURCE = "/src"
ROOT_SCRATCH = "/tmp/pyinstaller-build"
# What the executable is built from: a change to any of it builds the aarch64 one anew.
SOURCE_DIRS = ("provider", "provider_archive/pyinstaller")


@dataclass(frozen=True)
class BuiltTarget:
    target: str
    path: Path
    floor: GlibcVersion | None
    origin: str  # how it was made, for the summary

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6


class FloorTooHigh(RuntimeError):
    pass


def _source_files() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in (REPO_ROOT / d).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]  # fmt: skip
    return sorted([*files, REPO_ROOT / "provider_archive/executable.py"])


def inputs_digest(requirements: list[str]) -> str:
    digest = hashlib.sha256("\n".join(requirements).encode())
    for path in _source_files():
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def build_emulated(output: Path) -> BuiltTarget:
    """The aarch64 executable: from the cache when its inputs are unchanged, else built in
    the arm64 root (made first if missing)."""
    requirements = build_requirements((REPO_ROOT / "pyproject.toml").read_text())
    cached = cache_dir() / "executables" / f"{EMULATED_TARGET}-{inputs_digest(requirements)}"
    started = time.monotonic()
    from_cache = cached.exists()
    if not from_cache:
        root = EmulatedRoot(cache_dir() / "aarch64-bookworm-root")
        root.ensure()
        source = root.host_path(ROOT_SOURCE)
        shutil.rmtree(source, ignore_errors=True)
        for directory in SOURCE_DIRS:
            shutil.copytree(REPO_ROOT / directory, source / directory,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        with root.mounted():
            python = ensure_environment(root, ROOT_ENV, ROOT_PYTHON, requirements)
            built = build_in(root, python, ROOT_SOURCE, ROOT_SCRATCH, cached.with_suffix(".new"))
        shutil.rmtree(source, ignore_errors=True)
        for stale in cached.parent.glob(f"{EMULATED_TARGET}-*"):  # older inputs' builds
            if stale != built:
                stale.unlink()
        built.rename(cached)
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, output)
    output.chmod(0o755)
    origin = "from the cache" if from_cache else f"built in {time.monotonic() - started:.0f} s"
    return BuiltTarget(EMULATED_TARGET, output, executable_floor(output), origin)


def checked(built: BuiltTarget) -> BuiltTarget:
    """Raises FloorTooHigh for an executable the oldest 1.x host image could not run."""
    if built.floor is not None and built.floor > OLDEST_HOST_GLIBC:
        raise FloorTooHigh(
            f"{built.target}: needs glibc {version_text(built.floor)}, above "
            f"{version_text(OLDEST_HOST_GLIBC)} (debian-12-slim host images); build it on an "
            "older distribution"
        )
    return built


def release_targets(native: Path, output_dir: Path) -> list[BuiltTarget]:
    """This machine's executable (`make par`'s) and the aarch64 one, floors checked. Raises
    RootUnavailable (what to install) or FloorTooHigh."""
    native_target = host_target()
    if native_target != NATIVE_TARGET:
        raise RootUnavailable(f"the release is built on {NATIVE_TARGET} (this is {native_target})")
    built = BuiltTarget(native_target, native, executable_floor(native), "make par")
    return [checked(built), checked(build_emulated(output_dir / EMULATED_TARGET / native.name))]


def summary_line(built: BuiltTarget) -> str:
    return (f"  {built.target:<14} {built.size_mb:6.1f} MB  glibc >= {version_text(built.floor)}"
            f"  ({built.origin})")  # fmt: skip
