"""Provider archives in an OCI registry, as wash pushes and a wasmCloud 1.x host pulls them.

One layer holding the PAR file's bytes (media type below), a `{}` config blob of the wasmCloud
config type, an OCI image manifest. The manifest checks are sans-IO (`par_layer`); the transfer
is oras-py's. Plain HTTP only when asked (`insecure`) or for a loopback registry.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PAR_LAYER_MEDIA_TYPE = "application/vnd.wasmcloud.provider.archive.layer.v1+par"
PAR_CONFIG_MEDIA_TYPE = "application/vnd.wasmcloud.provider.archive.config"
OCI_TAR_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class OciError(ValueError):
    """A reference, manifest or blob a host would not start a provider from."""


def is_loopback_registry(reference: str) -> bool:
    host = reference.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tag(reference: str, environment: Mapping[str, str] = os.environ) -> None:
    """A host refuses `:latest` (and no tag, which means latest) unless allowed."""
    name = reference.rsplit("/", 1)[-1]
    tag = name.split("@", 1)[0].partition(":")[2] if "@" not in name else "digest"
    if tag in ("", "latest") and not environment.get("WASMCLOUD_OCI_ALLOW_LATEST"):
        raise OciError(
            f"{reference}: the latest tag is refused (set WASMCLOUD_OCI_ALLOW_LATEST to allow it)"
        )


def par_layer(manifest: Any) -> dict[str, Any]:
    """The one PAR layer of a manifest, checked as the host's OCI client checks it."""
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise OciError("not an OCI image manifest (schemaVersion 2)")
    media_type = manifest.get("mediaType")
    if media_type is not None and media_type not in MANIFEST_MEDIA_TYPES:
        raise OciError(f"manifest media type {media_type} is not an image manifest")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
        raise OciError("a provider archive artifact has exactly one layer")
    layer: dict[str, Any] = layers[0]
    if layer.get("mediaType") not in (PAR_LAYER_MEDIA_TYPE, OCI_TAR_LAYER_MEDIA_TYPE):
        raise OciError(f"layer media type {layer.get('mediaType')} is not a provider archive")
    digest = layer.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise OciError("the layer has no sha256 digest")
    return layer


def check_blob(data: bytes, layer: Mapping[str, Any]) -> bytes:
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != layer["digest"]:
        raise OciError(f"the downloaded layer does not match its digest {layer['digest']}")
    return data


def _registry(reference: str, insecure: bool) -> Any:
    from oras.provider import Registry

    registry = Registry(
        hostname=reference.split("/", 1)[0],
        insecure=insecure or is_loopback_registry(reference),
    )
    user, password = os.environ.get("WASH_REG_USER"), os.environ.get("WASH_REG_PASSWORD")
    if user and password:
        registry.auth.set_basic_auth(user, password)
    return registry


def push_archive(reference: str, archive: Path, insecure: bool = False) -> str:
    """Push the PAR file as wash does; returns the manifest's digest."""
    registry = _registry(reference, insecure)
    with tempfile.TemporaryDirectory(prefix="par-push-") as scratch:
        config = Path(scratch, "config.json")
        config.write_text("{}")
        response = registry.push(
            target=reference,
            files=[f"{archive}:{PAR_LAYER_MEDIA_TYPE}"],
            manifest_config=f"{config}:{PAR_CONFIG_MEDIA_TYPE}",
            disable_path_validation=True,
            quiet=True,
        )
    digest: str = response.headers.get("Docker-Content-Digest", "")
    return digest


def pull_archive(reference: str, insecure: bool = False) -> bytes:
    """The PAR bytes under `reference`, digest-checked."""
    registry = _registry(reference, insecure)
    try:
        manifest = registry.get_manifest(reference, allowed_media_type=list(MANIFEST_MEDIA_TYPES))
    except ValueError as exc:
        raise OciError(
            f"failed to fetch provider under OCI reference `{reference}`: {exc}"
        ) from None
    layer = par_layer(manifest)
    with tempfile.TemporaryDirectory(prefix="par-pull-") as scratch:
        blob = Path(scratch, "layer")
        registry.download_blob(reference, layer["digest"], str(blob))
        return check_blob(blob.read_bytes(), layer)
