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
OUTPUT = EXAMPLE / "build" / "example.wasm"  # world `example`: everything, transactions too
# World `example-wash`: the same guest without transactions, which wash 2.10 cannot serve.
WASH_OUTPUT = EXAMPLE / "build" / "example-wash.wasm"
WORLDS = ((OUTPUT, "example"), (WASH_OUTPUT, "example-wash"))
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
    """Both worlds' components; returns the full one's path."""
    for output, world in WORLDS:
        build_world(output, world, force)
    return OUTPUT


def build_world(output: Path, world: str, force: bool) -> None:
    stamp = output.with_suffix(".sha256")
    digest = inputs_digest()
    if not force and output.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"component up to date: {output.relative_to(ROOT)}")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    componentize = Path(sys.executable).with_name("componentize-py")
    with tempfile.TemporaryDirectory(prefix="example-wit-") as wit:
        assemble_wit(Path(wit))
        print(f"building the {world} component with componentize-py (about 10 s) ...",
              flush=True)  # fmt: skip
        started = time.perf_counter()
        subprocess.run(
            [str(componentize), "-d", wit, "-w", world, "componentize",
             "-p", str(EXAMPLE), "app", "-o", str(output)],
            check=True,
        )  # fmt: skip
    stamp.write_text(digest)
    size_mb = output.stat().st_size / 1e6
    elapsed = time.perf_counter() - started
    print(f"built {output.relative_to(ROOT)} ({size_mb:.1f} MB) in {elapsed:.1f} s")


if __name__ == "__main__":
    build(force="--force" in sys.argv)
