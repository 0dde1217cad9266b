"""PyInstaller runtime hook: a onefile provider leaves no orphan process and no unpacked tree.

A onefile executable is a bootloader parent that unpacks Python to `/tmp/_MEI…` and runs it as
its child. A wasmCloud host SIGKILLs the parent after the shutdown reply (or without one): the
parent's own cleanup never runs and the child would keep running. So, in the child: ask Linux to
send SIGTERM when the parent dies (the provider answers SIGTERM with its clean shutdown), exit
at once if the parent is already gone, and remove the unpacked tree when Python exits.

If the parent is still alive then, it removes the directory itself once we exit and warns when
the directory is gone: so an empty directory is left for it (the entry point exits right after
this hook runs, without interpreter teardown, so the parent removes it at once).
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
        return os.readlink(f"/proc/{parent_pid}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return False


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
