"""A provider's executable from its manifest `image:`, fetched and unpacked as a 1.x host does.

`file://` paths (relative ones against the manifest's folder, as `wash app deploy` rewrites
them) or OCI references (`:latest` refused unless `WASMCLOUD_OCI_ALLOW_LATEST`; plain HTTP for
loopback registries and those in `WASMCLOUD_OCI_ALLOWED_INSECURE`). The archive is read with the
host's rules (only this machine's target loaded, hashes checked; `HOST_SHIM_TARGET` names
another, e.g. `aarch64-linux` to run it under qemu-user) and the binary is written to
`<temp dir>/wasmcloudcache/<host id>/<reference, lower-cased, non-alphanumerics as _>`, mode
0755 — where the host puts it.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from host_shim.manifest import file_image_path
from provider_archive.archive import ProviderArchive, host_target, read_archive
from provider_archive.oci import check_tag, pull_archive


@dataclass(frozen=True)
class InstalledProvider:
    reference: str  # as the host names it: the file path, or the OCI reference
    executable: Path
    archive: ProviderArchive


def cache_file_name(reference: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", reference.lower())


def cache_path(host_id: str, reference: str) -> Path:
    return Path(tempfile.gettempdir(), "wasmcloudcache", host_id, cache_file_name(reference))


def archive_bytes(image: str, base_dir: Path) -> tuple[str, bytes]:
    """(the host's name for the reference, the archive's bytes)."""
    if image.startswith("file://"):
        path = file_image_path(image, base_dir)
        return str(path), path.read_bytes()
    reference = image.removeprefix("oci://")
    check_tag(reference)
    insecure = reference.split("/", 1)[0] in os.environ.get(
        "WASMCLOUD_OCI_ALLOWED_INSECURE", ""
    ).split(",")
    return reference, pull_archive(reference, insecure=insecure)


def shim_target() -> str:
    """The target a host on this machine loads (`{ARCH}-{OS}`), unless HOST_SHIM_TARGET says."""
    return os.environ.get("HOST_SHIM_TARGET") or host_target()


def install_provider(image: str, base_dir: Path, host_id: str) -> InstalledProvider:
    reference, data = archive_bytes(image, base_dir)
    target = shim_target()
    archive = read_archive(data, target=target)
    executable = cache_path(host_id, reference)
    executable.parent.mkdir(parents=True, exist_ok=True)
    # The host rewrites the file each time: a fresh inode, so a running copy is never touched.
    executable.unlink(missing_ok=True)
    descriptor = os.open(executable, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with os.fdopen(descriptor, "wb") as output:
        output.write(archive.binaries[target])
        os.fchmod(output.fileno(), 0o755)  # whatever the umask
    return InstalledProvider(reference, executable, archive)
