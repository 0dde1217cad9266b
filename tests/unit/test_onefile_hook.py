"""The onefile runtime hook's one decision: is our parent the bootloader that started us (else
it died before we asked to be told, and we exit)? Natively and under qemu-user emulation."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HOOK = Path(__file__).resolve().parents[2] / "provider_archive/pyinstaller/onefile_cleanup_hook.py"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("onefile_cleanup_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # outside a onefile bundle it installs nothing
    return module


is_our_bootloader = _hook().is_our_bootloader
EXE = "/tmp/provider/sqldb-postgres"
QEMU = "/usr/bin/qemu-aarch64-static"


def test_natively_the_parent_runs_the_same_executable() -> None:
    assert is_our_bootloader(EXE, EXE, [EXE], "/")
    assert not is_our_bootloader(EXE, "/usr/lib/systemd/systemd", ["/sbin/init"], "/")


def test_under_qemu_the_parent_is_the_emulator_running_our_executable() -> None:
    binfmt = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert is_our_bootloader(EXE, QEMU, [binfmt, EXE, "sqldb-postgres"], "/")  # P flag
    assert is_our_bootloader(EXE, QEMU, [binfmt, EXE], "/")
    assert is_our_bootloader(EXE, QEMU, [QEMU, "provider/sqldb-postgres"], "/tmp")  # relative


def test_under_qemu_an_emulator_running_another_program_is_not_ours() -> None:
    assert not is_our_bootloader(EXE, QEMU, [QEMU, "/usr/bin/other"], "/")
    assert not is_our_bootloader(EXE, QEMU, [QEMU], "/")
    # Our path further along is an argument, not the program.
    assert not is_our_bootloader(EXE, QEMU, [QEMU, "/bin/sh", "-c", EXE], "/")


def test_a_reaper_that_is_not_an_emulator_never_matches_by_its_arguments() -> None:
    assert not is_our_bootloader(EXE, "/usr/bin/tini", ["/usr/bin/tini", EXE], "/")
