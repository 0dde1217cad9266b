"""The environment the provider executable is built in: the provider's runtime dependencies
(`[project].dependencies`) and PyInstaller, nothing else.

PyInstaller bundles whatever the provider's imports find, optional ones included, so a build
made in the development venv carries what tests and benches installed there (numpy came in
through one such import: 25 MB of it). A venv of its own, made once and kept while the
requirements are the same (a stamp holds their digest), keeps the executable to what runs.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

STAMP = ".requirements"


def build_requirements(pyproject_text: str) -> list[str]:
    """The runtime dependencies and the dev extras' PyInstaller pin, in that order."""
    project = tomllib.loads(pyproject_text)["project"]
    dev = project.get("optional-dependencies", {}).get("dev", [])
    pyinstaller = [r for r in dev if re.match(r"pyinstaller\b", r, re.IGNORECASE)]
    return [*project["dependencies"], *pyinstaller]


def requirements_digest(requirements: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()


class BuildPlace(Protocol):
    """Where commands run: this machine, or an emulated root (paths as seen inside it)."""

    def command(self, argv: Sequence[str]) -> list[str]: ...

    def host_path(self, inside: str) -> Path: ...


class ThisMachine:
    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def host_path(self, inside: str) -> Path:
        return Path(inside)


def ensure_environment(place: BuildPlace, venv: str, base_python: str,
                       requirements: Sequence[str]) -> str:  # fmt: skip
    """The venv's python (a path inside `place`), made or remade unless it already holds
    `requirements`. Wheels where PyPI has them (`--prefer-binary`: an sdist only where there
    is no wheel, as for the pure-Python nkeys)."""
    python = f"{venv}/bin/python"
    stamp = place.host_path(f"{venv}/{STAMP}")
    digest = requirements_digest(requirements)
    if stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"==> a build environment with the provider's runtime dependencies in {venv}",
          flush=True)  # fmt: skip
    subprocess.run(place.command([base_python, "-m", "venv", "--clear", venv]), check=True)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(place.command([*pip, "--upgrade", "pip"]), check=True)
    subprocess.run(place.command([*pip, "--prefer-binary", *requirements]), check=True)
    stamp.write_text(digest)
    return python
