"""Build the example guest component with componentize-py (`make component`).

The WIT it is built against is assembled in a temporary directory: the component's world
(components/example/wit), our `wit/` as the wasmcloud:postgres dependency, and the
wasi@0.2.0 packages its HTTP export needs, taken from the spin-sdk wheel (a development
dependency that ships them). The output is skipped when its inputs have not changed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "components" / "example"
OUTPUT = EXAMPLE / "build" / "example.wasm"
WASI_PACKAGES = ("http", "io", "clocks", "random", "cli", "filesystem", "sockets")


def wasi_wit_dir() -> Path:
    import spin_sdk  # only for the wasi@0.2.0 WIT files it carries

    return Path(spin_sdk.__file__).parent / "wit" / "deps"


def inputs_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(
        [*EXAMPLE.glob("*.py"), *EXAMPLE.glob("wit/*.wit"), *ROOT.glob("wit/*.wit")]
    ):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def assemble_wit(directory: Path) -> None:
    shutil.copytree(EXAMPLE / "wit", directory, dirs_exist_ok=True)
    deps = directory / "deps"
    shutil.copytree(ROOT / "wit", deps / "postgres")
    for package in WASI_PACKAGES:
        shutil.copytree(wasi_wit_dir() / f"{package}@0.2.0", deps / f"{package}@0.2.0")


def build(force: bool = False) -> Path:
    stamp = OUTPUT.with_suffix(".sha256")
    digest = inputs_digest()
    if not force and OUTPUT.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"component up to date: {OUTPUT.relative_to(ROOT)}")
        return OUTPUT
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    componentize = Path(sys.executable).with_name("componentize-py")
    with tempfile.TemporaryDirectory(prefix="example-wit-") as wit:
        assemble_wit(Path(wit))
        print("building the example component with componentize-py (about 10 s) ...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [str(componentize), "-d", wit, "-w", "example", "componentize",
             "-p", str(EXAMPLE), "app", "-o", str(OUTPUT)],
            check=True,
        )  # fmt: skip
    stamp.write_text(digest)
    size_mb = OUTPUT.stat().st_size / 1e6
    elapsed = time.perf_counter() - started
    print(f"built {OUTPUT.relative_to(ROOT)} ({size_mb:.1f} MB) in {elapsed:.1f} s")
    return OUTPUT


if __name__ == "__main__":
    build(force="--force" in sys.argv)
