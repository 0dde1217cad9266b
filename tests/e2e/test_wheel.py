"""Packaging as a Python user expects: `python -m build` makes a wheel whose console script
`sqldb-postgres-provider` installs and serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from devkit.provider_harness import healthy_then_stopped_like_a_host
from host_shim.provider_process import LatticeHost, ProviderProcess

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "provider", "provider_archive", "host_shim", "devkit")


def archive_text(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(suffix))
        return archive.read(name).decode()


def build_wheel(tmp_path: Path) -> Path:
    """From a copy of the sources, so the checkout gets no build/lib or egg-info."""
    tree = tmp_path / "src"
    tree.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tree / name)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=tree, check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    return wheel


async def test_the_wheel_installs_a_console_script_that_serves(
    tmp_path: Path, nats_url: str
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert (
            "sqldb-postgres-provider = provider.__main__:main"
            in archive.read(entry_points).decode()
        )
    assert "provider/wit/resolved.json" in names  # the codec's type model is data
    # Only what the provider runs: the tooling stays in the repository.
    assert {name.split("/")[0] for name in names if not name.startswith("sqldb_postgres")} == {
        "provider"
    }
    metadata = archive_text(wheel, "METADATA")
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in required if "extra ==" not in line]
    assert not [line for line in runtime if "wasmtime" in line or "pyyaml" in line.lower()]
    assert any("asyncpg" in line for line in runtime)
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(wheel)], check=True,
    )  # fmt: skip
    script = target / "bin" / "sqldb-postgres-provider"
    help_text = subprocess.run(
        [str(script), "--help"], env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    ).stdout
    assert help_text.startswith("usage: sqldb-postgres-provider")
    imported = subprocess.run(
        [sys.executable, "-c", "import provider; print(provider.__file__)"],
        env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
        cwd=tmp_path,  # not the checkout, which `-c` would put first on sys.path
    ).stdout  # fmt: skip
    assert imported.startswith(str(target)), "the installed copy, not the checkout, runs"

    host = LatticeHost(nats_url)
    # The installed copy only (PYTHONPATH first), started as a host starts a provider, where
    # wasmtime cannot even be imported: the provider never needs it.
    blocker = tmp_path / "no-wasmtime" / "wasmtime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('wasmtime is not installed here')\n")
    path = f"{blocker.parent}:{target}"
    command = ["/usr/bin/env", f"PYTHONPATH={path}", str(script)]
    await healthy_then_stopped_like_a_host(ProviderProcess(host, command=command), nats_url)
