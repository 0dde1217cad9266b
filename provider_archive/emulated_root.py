"""A Debian arm64 root run under qemu-user, cached between runs: where the aarch64 executable
is built on an x86-64 machine.

PyInstaller bundles the interpreter and libraries of the machine it runs on, so an aarch64
executable is built by an aarch64 Python: Debian bookworm's (glibc 2.36, the floor of the
oldest 1.x host image) in a root made by mmdebstrap, its programs run by qemu-user through
binfmt_misc. The root is made once (a few minutes) and kept under the cache directory, outside
the clone; a stamp names the packages it was made with, so a changed list makes it anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"
# Python and what PyInstaller needs to build and bundle (libpython: the shared library it
# copies; binutils: objdump, which it runs on every binary; zlib: the bootloader's).
PACKAGES = ("python3.11", "python3.11-venv", "python3-pip", "libpython3.11", "zlib1g",
            "ca-certificates", "binutils", "file")  # fmt: skip
BINFMT_ENTRY = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


ROOT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # where Debian's pip looks


def _trusted_cas() -> Path:
    return Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
                or ssl.get_default_verify_paths().cafile or ROOT_CA_BUNDLE)  # fmt: skip


class RootUnavailable(RuntimeError):
    """The machine cannot run an arm64 root; the message says what to install or enable."""


def cache_dir() -> Path:
    base = os.environ.get("RELEASE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sqldb-postgres"
    )
    return Path(base)


def missing_prerequisite(entry_text: str | None, has_mmdebstrap: bool, is_root: bool) -> str | None:
    """What stops an arm64 root here, as one line saying what to do; None when nothing does.
    `entry_text`: binfmt_misc's qemu-aarch64 entry (None where there is none)."""
    if not is_root:
        return "building the aarch64 target needs root (chroot and mounts into the root)"
    if not has_mmdebstrap:
        return "no mmdebstrap: apt-get install mmdebstrap qemu-user-static binfmt-support"
    if entry_text is None:
        return ("no binfmt_misc entry for qemu-aarch64: install qemu-user-static and "
                "binfmt-support, mount binfmt_misc on /proc/sys/fs/binfmt_misc and run "
                "`update-binfmts --enable qemu-aarch64`")  # fmt: skip
    lines = entry_text.splitlines()
    if "enabled" not in lines:
        return (
            "binfmt_misc's qemu-aarch64 entry is disabled: `update-binfmts --enable qemu-aarch64`"
        )
    flags = next((line.split(":", 1)[1] for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:  # the emulator must be opened at registration to work in a chroot
        return "binfmt_misc's qemu-aarch64 entry lacks the F flag: use Debian's qemu-user-static"
    return None


def check_machine() -> None:
    """Raises RootUnavailable naming what to install or enable."""
    if not BINFMT_ENTRY.parent.joinpath("status").exists() and os.geteuid() == 0:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_ENTRY.parent)],
                           check=True, capture_output=True)  # fmt: skip
            subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    try:
        entry: str | None = BINFMT_ENTRY.read_text()
    except OSError:
        entry = None
    problem = missing_prerequisite(entry, shutil.which("mmdebstrap") is not None,
                                   os.geteuid() == 0)  # fmt: skip
    if problem is not None:
        raise RootUnavailable(problem)


class EmulatedRoot:
    """The arm64 root at `path`: made if missing, commands run in it with chroot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def _stamp(self) -> Path:
        return self.path / ".made-for"

    @staticmethod
    def _recipe() -> str:
        return hashlib.sha256(f"{SUITE}\0{','.join(PACKAGES)}".encode()).hexdigest()

    def ensure(self) -> bool:
        """Make the root unless the cached one is current; True when it was made now."""
        if self._stamp.exists() and self._stamp.read_text() == self._recipe():
            return False
        check_machine()
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        print(f"==> making an arm64 {SUITE} root in {self.path} (once; about 4 min)", flush=True)
        started = time.monotonic()
        subprocess.run(["mmdebstrap", "--arch=arm64", "--variant=apt", "--quiet",
                        f"--include={','.join(PACKAGES)}", SUITE, str(partial)],
                       check=True)  # fmt: skip
        partial.rename(self.path)
        self._stamp.write_text(self._recipe())
        print(f"==> arm64 root made in {time.monotonic() - started:.0f} s", flush=True)
        return True

    def host_path(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["chroot", str(self.path), *argv]

    @contextlib.contextmanager
    def mounted(self) -> Iterator[None]:
        """/proc and /dev inside the root while commands run (pip and PyInstaller read them)."""
        check_machine()
        mounts = [(["-t", "proc", "proc"], "proc"), (["--rbind", "/dev"], "dev")]
        done: list[Path] = []
        try:
            for options, inside in mounts:
                target = self.host_path(inside)
                target.mkdir(exist_ok=True)
                subprocess.run(["mount", *options, str(target)], check=True)
                done.append(target)
            # pip reaches PyPI from inside as this machine does: its resolver, and the CAs it
            # trusts (a proxy on the way may present its own).
            for host_file, inside in ((Path("/etc/resolv.conf"), "/etc/resolv.conf"),
                                      (_trusted_cas(), ROOT_CA_BUNDLE)):  # fmt: skip
                if host_file.exists():
                    self.host_path(inside).unlink(missing_ok=True)
                    shutil.copy(host_file, self.host_path(inside))
            yield
        finally:
            for target in reversed(done):
                subprocess.run(["umount", "--recursive", "--lazy", str(target)], check=False)
