#!/usr/bin/env python3
"""Build (or find) the lattice-harness binary: the real wasmCloud 1.9.2 host, wadm 0.21.1 and
secrets-nats-kv 0.2.0 in one executable (see src/main.rs).

Usage: python3 tests/lattice/build.py [--jobs N] [--force]

The build lives outside the repository, in $SQLDB_LATTICE_CACHE or
${XDG_CACHE_HOME:-~/.cache}/sqldb-postgres-lattice:
  <cache>/target/            cargo's target dir, shared by every key (incremental)
  <cache>/bin/<key>/lattice-harness   one binary per key = sha256(Cargo.toml, Cargo.lock, src/**)
A cached key returns at once. Otherwise `nice -n 10 cargo build --release --locked -j N` runs
(its output on stderr). The last stdout line is JSON:
  {"harness": "<path>", "key": "<key>", "cache": "<cache>"}
The secrets backend is the same binary (`lattice-harness secrets run ...`).
Exit status is non-zero, with a message on stderr, when the build cannot be done.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINARY = "lattice-harness"


def cache_dir() -> Path:
    explicit = os.environ.get("SQLDB_LATTICE_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "sqldb-postgres-lattice"


def source_key() -> str:
    """sha256 over the names and contents of Cargo.toml, Cargo.lock and src/** (16 hex digits)."""
    files = [HERE / "Cargo.toml", HERE / "Cargo.lock"]
    files += sorted(p for p in (HERE / "src").rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(HERE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def find_cargo() -> str:
    found = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(found).exists():
        sys.exit("build.py: cargo not found (install Rust with rustup; crates come from crates.io)")
    return found


def build(cache: Path, jobs: int) -> Path:
    """Run cargo into <cache>/target and return the built binary."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(cache / "target"))
    command = ["nice", "-n", "10", find_cargo(), "build", "--release", "--locked", "-j", str(jobs)]
    where = f"in {HERE}, target {env['CARGO_TARGET_DIR']}"
    print(f"build.py: {' '.join(command)} ({where})", file=sys.stderr)
    started = time.monotonic()
    # cargo's progress goes to stderr; keep our stdout for the result line.
    result = subprocess.run(command, cwd=HERE, env=env, stdout=sys.stderr, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        code = result.returncode
        sys.exit(f"build.py: cargo build failed (exit {code}) after {elapsed:.0f} s; see above")
    print(f"build.py: built {BINARY} in {elapsed:.0f} s", file=sys.stderr)
    return cache / "target" / "release" / BINARY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", "-j", type=int, default=2, help="cargo -j (default 2)")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args()

    cache = cache_dir()
    key = source_key()
    final = cache / "bin" / key / BINARY
    if args.force or not final.exists():
        cache.mkdir(parents=True, exist_ok=True)
        # One build at a time (tests may call us in parallel); re-check once we hold the lock.
        with open(cache / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if args.force or not final.exists():
                built = build(cache, args.jobs)
                final.parent.mkdir(parents=True, exist_ok=True)
                partial = final.with_suffix(".partial")
                shutil.copy2(built, partial)
                os.replace(partial, final)
    print(json.dumps({"harness": str(final), "key": key, "cache": str(cache)}))


if __name__ == "__main__":
    main()
