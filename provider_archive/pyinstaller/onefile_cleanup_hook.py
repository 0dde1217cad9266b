"""PyInstaller runtime hook: a onefile provider leaves no orphan process and no unpacked tree.

A onefile executable is a bootloader parent that unpacks Python to `/tmp/_MEI…` and runs it as
its child. A wasmCloud host SIGKILLs the parent after the shutdown reply (or without one): the
parent's own cleanup never runs and the child would keep running. So, in the child: ask Linux to
send SIGTERM when the parent dies (the provider answers SIGTERM with its clean shutdown), exit
at once if the parent is already gone, and remove the unpacked tree when Python exits.

If the parent is still alive then, it removes the directory itself once we exit and warns when
the directory is gone: so an empty directory is left for it (the entry point exits right after
this hook runs, without interpreter teardown, so the parent removes it at once).

The same holds under qemu-user emulation (`is_our_bootloader` says how the parent is told).
"""

import atexit
import ctypes
import os
import shutil
import signal
import sys

PR_SET_PDEATHSIG = 1


def _remove_unpacked_tree() -> None:
    unpacked = sys._MEIPASS  # type: ignore[attr-defined]
    shutil.rmtree(unpacked, ignore_errors=True)
    if _parent_is_our_bootloader(os.getppid()):
        os.makedirs(unpacked, exist_ok=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Until the provider installs its own handler, SIGTERM means: exit, running atexit hooks.
    raise SystemExit(128 + signum)


def _parent_is_our_bootloader(parent_pid: int) -> bool:
    try:
        own = os.readlink("/proc/self/exe")
        parent = os.readlink(f"/proc/{parent_pid}/exe")
        with open(f"/proc/{parent_pid}/cmdline", "rb") as cmdline:
            argv = [arg.decode(errors="replace") for arg in cmdline.read().split(b"\0") if arg]
        parent_cwd = os.readlink(f"/proc/{parent_pid}/cwd")
    except OSError:
        return False
    return is_our_bootloader(own, parent, argv, parent_cwd)


def is_our_bootloader(
    own_exe: str, parent_exe: str, parent_argv: list[str], parent_cwd: str
) -> bool:
    """Whether the parent runs the same program as we do. Natively both `/proc/*/exe` name it.
    Under qemu-user (an aarch64 build on an x86-64 machine, through binfmt_misc) ours is the
    program qemu emulates, while the parent's is the emulator itself: the program it runs is
    then one of its first arguments (after the interpreter's path; with binfmt's P flag the
    original argv[0] follows). A reaper or init never matches either way."""
    if parent_exe == own_exe:
        return True
    if not os.path.basename(parent_exe).startswith("qemu-"):
        return False
    own = os.path.realpath(own_exe)
    return any(os.path.realpath(os.path.join(parent_cwd, arg)) == own for arg in parent_argv[1:3])


def _install() -> None:
    if not hasattr(sys, "_MEIPASS") or not sys.platform.startswith("linux"):
        return
    atexit.register(_remove_unpacked_tree)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died before prctl took effect: then we were re-parented already.
    if not _parent_is_our_bootloader(os.getppid()):
        raise SystemExit(128 + signal.SIGTERM)


_install()
