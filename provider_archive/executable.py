"""Build the self-contained provider executable with PyInstaller (`--onefile`).

The result runs with no Python on the host, no arguments and an empty environment, as a
wasmCloud host starts a provider. `_cffi_backend` is hidden from PyInstaller's analysis (PyNaCl
loads it from C) and the codec's type model is data, so both are named here; the runtime hook
keeps a host's SIGKILL of the bootloader from leaving an orphan or an unpacked tree.

PyInstaller runs in a runtime-only environment (`build_env`): on this machine for its own
target, or inside an emulated root for another (`emulated_root`, `release`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from provider_archive.build_env import (
    BuildPlace,
    ThisMachine,
    build_requirements,
    ensure_environment,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
NATIVE_ENV = REPO_ROOT / "build" / "runtime-env"
# Imported by nothing the provider runs; excluded so a stray import cannot pull them in.
EXCLUDED_MODULES = ("tkinter", "wasmtime", "host_shim", "provider_archive", "pytest", "yaml",
                    "numpy", "matplotlib")  # fmt: skip


def pyinstaller_command(python: str, source: str, name: str, scratch: str) -> list[str]:
    """PyInstaller's command line; `source` is the checkout (or a copy of it) where it runs."""
    hooks = f"{source}/provider_archive/pyinstaller"
    command = [python, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--strip"]
    command += ["--name", name, "--distpath", f"{scratch}/dist"]
    command += ["--workpath", f"{scratch}/work", "--specpath", f"{scratch}/work"]
    command += ["--paths", source, "--log-level", "WARN"]
    command += ["--hidden-import", "_cffi_backend"]
    command += ["--add-data", f"{source}/provider/wit/resolved.json:provider/wit"]
    command += ["--runtime-hook", f"{hooks}/onefile_cleanup_hook.py"]
    for module in EXCLUDED_MODULES:
        command += ["--exclude-module", module]
    return [*command, f"{hooks}/entry_point.py"]


def build_in(place: BuildPlace, python: str, source: str, scratch: str, output: Path) -> Path:
    """Run PyInstaller inside `place` and move the executable to `output` (a host path)."""
    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(place.host_path(scratch), ignore_errors=True)
    print(f"==> building {output} with PyInstaller", flush=True)
    try:
        subprocess.run(place.command(pyinstaller_command(python, source, output.name, scratch)),
                       check=True)  # fmt: skip
        shutil.move(str(place.host_path(f"{scratch}/dist/{output.name}")), output)
    finally:
        shutil.rmtree(place.host_path(scratch), ignore_errors=True)
    size = output.stat().st_size / 1e6
    print(f"==> {output}: {size:.1f} MB in {time.monotonic() - started:.0f} s", flush=True)
    return output


def build_executable(output: Path) -> Path:
    """This machine's target, from the runtime-only environment under build/."""
    requirements = build_requirements((REPO_ROOT / "pyproject.toml").read_text())
    place = ThisMachine()
    python = ensure_environment(place, str(NATIVE_ENV), sys.executable, requirements)
    scratch = str(REPO_ROOT / "build" / f"pyinstaller-{output.name}")
    return build_in(place, python, str(REPO_ROOT), scratch, output.resolve())
