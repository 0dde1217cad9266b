"""Build the self-contained provider executable with PyInstaller (`--onefile`).

The result runs with no Python on the host, no arguments and an empty environment, as a
wasmCloud host starts a provider. `_cffi_backend` is hidden from PyInstaller's analysis (PyNaCl
loads it from C) and the codec's type model is data, so both are named here; the runtime hook
keeps a host's SIGKILL of the bootloader from leaving an orphan or an unpacked tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "pyinstaller"
ENTRY_POINT = HERE / "entry_point.py"
RUNTIME_HOOK = HERE / "onefile_cleanup_hook.py"
TYPE_MODEL = REPO_ROOT / "provider" / "wit" / "resolved.json"
# Imported by nothing the provider runs; excluded so a stray import cannot pull them in.
EXCLUDED_MODULES = ("tkinter", "wasmtime", "host_shim", "provider_archive", "pytest", "yaml")


def pyinstaller_command(name: str, dist_dir: Path, work_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean"]
    command += ["--name", name, "--distpath", str(dist_dir)]
    command += ["--workpath", str(work_dir), "--specpath", str(work_dir)]
    command += ["--paths", str(REPO_ROOT), "--log-level", "WARN"]
    command += ["--hidden-import", "_cffi_backend"]
    command += ["--add-data", f"{TYPE_MODEL}:provider/wit"]
    command += ["--runtime-hook", str(RUNTIME_HOOK)]
    for module in EXCLUDED_MODULES:
        command += ["--exclude-module", module]
    return [*command, str(ENTRY_POINT)]


def build_executable(output: Path) -> Path:
    """Build into a temporary directory, then move the executable to `output`."""
    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyinstaller-") as scratch:
        dist_dir, work_dir = Path(scratch, "dist"), Path(scratch, "work")
        print(f"==> building {output.name} with PyInstaller (about 40 s)", flush=True)
        subprocess.run(pyinstaller_command(output.name, dist_dir, work_dir), check=True)
        shutil.move(str(dist_dir / output.name), output)
    size = output.stat().st_size / 1e6
    print(f"==> {output}: {size:.1f} MB in {time.monotonic() - started:.0f} s", flush=True)
    return output
