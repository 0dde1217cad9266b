"""The provider archive through a real OCI registry: pushed as wash pushes it, pulled back
byte for byte, and the provider started from the OCI reference as a host starts it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.local_registry import registry_executable, running_registry
from devkit.provider_harness import healthy_then_stopped_like_a_host
from host_shim.provider_image import cache_file_name, install_provider
from host_shim.provider_process import LatticeHost, ProviderProcess
from provider_archive import __main__ as cli
from provider_archive.oci import (
    PAR_CONFIG_MEDIA_TYPE,
    PAR_LAYER_MEDIA_TYPE,
    OciError,
    pull_archive,
    push_archive,
)
from tests import capabilities


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    if registry_executable() is None:
        capabilities.unavailable(
            "oci-registry", "docker-registry is not installed (apt-get install docker-registry)"
        )
    capabilities.require("oci-registry", True, "")
    with running_registry() as address:  # installed but not starting: an error, not a skip
        yield address


def registry_json(url: str, accept: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_push_writes_the_artifact_a_host_pulls(registry: str, provider_par: Path) -> None:
    reference = f"{registry}/sqldb-postgres:0.2.0"
    digest = push_archive(reference, provider_par)
    assert digest.startswith("sha256:")
    manifest = registry_json(
        f"http://{registry}/v2/sqldb-postgres/manifests/0.2.0",
        "application/vnd.oci.image.manifest.v1+json",
    )
    assert manifest["schemaVersion"] == 2
    assert manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json") == (
        "application/vnd.oci.image.manifest.v1+json"
    )
    assert manifest["config"]["mediaType"] == PAR_CONFIG_MEDIA_TYPE
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == PAR_LAYER_MEDIA_TYPE
    assert layer["size"] == provider_par.stat().st_size
    config_url = f"http://{registry}/v2/sqldb-postgres/blobs/{manifest['config']['digest']}"
    with urllib.request.urlopen(config_url, timeout=5) as response:
        assert response.read() == b"{}"
    assert pull_archive(reference) == provider_par.read_bytes()


def test_the_command_line_pushes_and_pulls(
    registry: str, provider_par: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = f"{registry}/you/sqldb-postgres:0.2.0-cli"
    assert cli.main(["push", reference, str(provider_par)]) == 0
    assert f"pushed {provider_par} to {reference}" in capsys.readouterr().out
    pulled = tmp_path / "pulled.par"
    assert cli.main(["pull", reference, "--output", str(pulled)]) == 0
    assert pulled.read_bytes() == provider_par.read_bytes()
    assert cli.main(["pull", f"{registry}/you/missing:1.0", "--output", str(pulled)]) == 1
    assert "error:" in capsys.readouterr().err


def test_a_reference_that_is_not_there_is_a_clear_error(registry: str) -> None:
    with pytest.raises(OciError, match="failed to fetch provider under OCI reference"):
        pull_archive(f"{registry}/nothing-here:0.0.1")


async def test_the_provider_starts_from_the_oci_reference(
    registry: str, provider_par: Path, nats_url: str, tmp_path: Path
) -> None:
    reference = f"{registry}/sqldb-postgres:0.2.0-start"
    push_archive(reference, provider_par)
    host = LatticeHost(nats_url)
    installed = install_provider(reference, tmp_path, host.host_id)
    assert installed.reference == reference
    assert installed.executable.name == cache_file_name(reference)
    with open(tmp_path / "provider.log", "wb") as log_file:
        process = ProviderProcess(host, log_file=log_file, command=[str(installed.executable)])
        await healthy_then_stopped_like_a_host(process, nats_url)


def test_latest_is_refused_by_the_host_shim(registry: str, tmp_path: Path) -> None:
    with pytest.raises(OciError, match="latest tag is refused"):
        install_provider(f"{registry}/sqldb-postgres:latest", tmp_path, "Nlatest")


def test_the_host_shim_runs_the_manifest_with_the_provider_from_the_registry(
    registry: str, provider_par: Path, tmp_path: Path
) -> None:
    """The user's path: push, change the one `image:` line, run the application."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, str(root / "components" / "build.py")], check=True)
    reference = f"{registry}/you/sqldb-postgres:0.2.0"
    assert cli.main(["push", reference, str(provider_par)]) == 0
    manifest = (root / "wadm.yaml").read_text()
    component = root / "components" / "example" / "build" / "example.wasm"
    manifest = manifest.replace("file://./build/sqldb-postgres.par", reference)
    manifest = manifest.replace("file://./components/example/build/example.wasm",
                                f"file://{component}")  # fmt: skip
    (tmp_path / "wadm.yaml").write_text(manifest)
    completed = subprocess.run(
        [sys.executable, "-m", "host_shim", str(tmp_path / "wadm.yaml")],
        cwd=root, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"provider archive {reference}: sqldb-postgres 0.2.0" in completed.stdout
    assert "written: 20" in completed.stdout and "updated: 5" in completed.stdout
    assert "provider stopped as a host stops it: 'shutting down'" in completed.stdout
