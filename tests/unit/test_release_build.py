"""The release build's decisions, apart from its I/O: which requirements go into the build
environment, what stops an emulated root (one line saying what to do), and a file's glibc
floor from objdump's listing."""

from __future__ import annotations

import re
from pathlib import Path

from provider_archive.build_env import build_requirements
from provider_archive.emulated_root import missing_prerequisite
from provider_archive.glibc_floor import highest, required_glibc, version_text

ENABLED_ENTRY = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
"""


def test_the_build_environment_holds_the_runtime_dependencies_and_pyinstaller_only() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    requirements = build_requirements(pyproject)
    names = {re.split(r"[<>=;\s]", requirement)[0] for requirement in requirements}
    assert {"asyncpg", "nats-py", "pyinstaller"} <= names
    assert not names & {"pytest", "wasmtime", "matplotlib", "hypothesis", "mypy"}


def test_what_stops_an_emulated_root_is_said_in_one_line() -> None:
    assert missing_prerequisite(ENABLED_ENTRY, True, True) is None
    assert "needs root" in str(missing_prerequisite(ENABLED_ENTRY, True, False))
    assert "apt-get install mmdebstrap" in str(missing_prerequisite(ENABLED_ENTRY, False, True))
    assert "update-binfmts --enable" in str(missing_prerequisite(None, True, True))
    disabled = ENABLED_ENTRY.replace("enabled", "disabled")
    assert "is disabled" in str(missing_prerequisite(disabled, True, True))
    without_f = ENABLED_ENTRY.replace("flags: PF", "flags: P")
    assert "F flag" in str(missing_prerequisite(without_f, True, True))
    for problem in (
        missing_prerequisite(None, False, False),
        missing_prerequisite(None, True, True),
    ):
        assert problem is not None and "\n" not in problem


OBJDUMP = """
Dynamic Section:
  NEEDED               libc.so.6
Version definitions:
1 0x01 0x0865f4e6 libfoo.so.1
2 0x00 0x0b792655 GLIBC_2.99
Version References:
  required from libm.so.6:
    0x09691a75 0x00 05 GLIBC_2.2.5
  required from libc.so.6:
    0x06969194 0x00 04 GLIBC_2.14
    0x069691b6 0x00 03 GLIBC_2.36
    0x0963cf85 0x00 02 GLIBC_PRIVATE
"""


def test_the_floor_is_the_highest_required_version_not_a_defined_one() -> None:
    assert required_glibc(OBJDUMP) == (2, 36)
    assert required_glibc("Dynamic Section:\n") is None  # static, or no references
    assert required_glibc("Version References:\n  required from libz.so.1:\n") is None
    assert (2, 9) < (2, 10) < (2, 36) and version_text((2, 2, 5)) == "2.2.5"
    assert highest([None, (2, 14), (2, 2, 5)]) == (2, 14) and highest([None]) is None
