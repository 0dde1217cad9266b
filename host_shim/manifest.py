"""The parts of a wadm application manifest a host needs to run it (wadm-types' shape).

`apiVersion: core.oam.dev/v1beta1`, `kind: Application`, `metadata.name` and
`metadata.annotations` (required; `version` in it), `spec.components` with `name`, `type`
(`component` or `capability`), `properties.image` / `id` / `config`, and `traits`
(`spreadscaler`, `link`). Ids default to `{manifest name}-{component name}`, each name lower-cased
with every non-alphanumeric character turned into `_`, as wadm derives them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ManifestError(ValueError):
    """The manifest is not a wadm application this host can run; says which field."""


@dataclass(frozen=True)
class SecretRef:
    name: str  # the key the provider sees (e.g. POSTGRES_PASSWORD)
    policy: str
    key: str  # what the secret backend stores it under


@dataclass(frozen=True)
class Link:
    source: str  # component name in the manifest
    target: str  # component name in the manifest
    namespace: str
    package: str
    interfaces: tuple[str, ...]
    name: str
    target_config: dict[str, str]
    target_secrets: tuple[SecretRef, ...]


@dataclass(frozen=True)
class ManifestComponent:
    name: str
    type: str  # "component" or "capability"
    image: str
    id: str
    config: dict[str, str]
    instances: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    components: dict[str, ManifestComponent]
    links: tuple[Link, ...] = field(default=())
    base_dir: Path = Path(".")

    def image_path(self, component: ManifestComponent) -> Path:
        """A `file://` image as a path (relative to the manifest's directory)."""
        if not component.image.startswith("file://"):
            raise ManifestError(f"{component.name}: only file:// images run here")
        return file_image_path(component.image, self.base_dir)


def file_image_path(image: str, base_dir: Path) -> Path:
    """`file://…` as a path; a relative one against the manifest's folder, as `wash app
    deploy` rewrites it."""
    path = Path(image.removeprefix("file://"))
    return path if path.is_absolute() else (base_dir / path).resolve()


def derived_id(manifest_name: str, component_name: str) -> str:
    """wadm's default id: each name lower-cased with non-alphanumerics as `_`, joined by `-`."""

    def normal(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "_", name.lower())

    return f"{normal(manifest_name)}-{normal(component_name)}"


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ManifestError(f"{where}.{key} is required")
    return mapping[key]


def _config(entries: Any, where: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for index, entry in enumerate(entries or []):
        name = _require(entry, "name", f"{where}[{index}]")
        for key, value in (entry.get("properties") or {}).items():
            merged[str(key)] = str(value)
        del name
    return merged


def parse_manifest(text: str, base_dir: Path = Path(".")) -> Manifest:
    document = yaml.safe_load(text)
    if _require(document, "apiVersion", "manifest") != "core.oam.dev/v1beta1":
        raise ManifestError("apiVersion must be core.oam.dev/v1beta1")
    if _require(document, "kind", "manifest") != "Application":
        raise ManifestError("kind must be Application")
    metadata = _require(document, "metadata", "manifest")
    name = str(_require(metadata, "name", "metadata"))
    annotations = _require(metadata, "annotations", "metadata")
    version = str(_require(annotations, "version", "metadata.annotations"))
    spec = _require(document, "spec", "manifest")
    components: dict[str, ManifestComponent] = {}
    links: list[Link] = []
    for index, raw in enumerate(_require(spec, "components", "spec") or []):
        where = f"spec.components[{index}]"
        cname = str(_require(raw, "name", where))
        kind = str(_require(raw, "type", where))
        if kind not in ("component", "capability"):
            raise ManifestError(f"{where}.type must be component or capability, not {kind}")
        properties = _require(raw, "properties", where)
        instances = 1
        for trait_index, trait in enumerate(raw.get("traits") or []):
            twhere = f"{where}.traits[{trait_index}]"
            ttype = _require(trait, "type", twhere)
            tprops = _require(trait, "properties", twhere)
            if ttype == "spreadscaler":
                instances = int(_require(tprops, "instances", f"{twhere}.properties"))
            elif ttype == "link":
                links.append(_link(cname, tprops, f"{twhere}.properties"))
        components[cname] = ManifestComponent(
            name=cname,
            type=kind,
            image=str(_require(properties, "image", f"{where}.properties")),
            id=str(properties.get("id") or derived_id(name, cname)),
            config=_config(properties.get("config"), f"{where}.properties.config"),
            instances=instances,
        )
    for link in links:
        if link.target not in components:
            raise ManifestError(f"link from {link.source} targets unknown component {link.target}")
    return Manifest(name, version, components, tuple(links), base_dir)


def _link(source: str, properties: Any, where: str) -> Link:
    target = _require(properties, "target", where)
    secrets: list[Any] = []
    if isinstance(target, str):  # the legacy form, with deprecated target_config
        target_name, config = target, properties.get("target_config")
    else:
        target_name = _require(target, "name", f"{where}.target")
        config, secrets = target.get("config"), list(target.get("secrets") or [])
    refs = tuple(
        SecretRef(
            name=str(_require(secret, "name", f"{where}.target.secrets[{i}]")),
            policy=str((secret.get("properties") or {}).get("policy", "")),
            key=str((secret.get("properties") or {}).get("key", "")),
        )
        for i, secret in enumerate(secrets)
    )
    return Link(
        source=source,
        target=str(target_name),
        namespace=str(_require(properties, "namespace", where)),
        package=str(_require(properties, "package", where)),
        interfaces=tuple(str(i) for i in _require(properties, "interfaces", where)),
        name=str(properties.get("name") or "default"),
        target_config=_config(config, f"{where}.target.config"),
        target_secrets=refs,
    )


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(path.read_text(), path.resolve().parent)
