"""wadm.yaml has the shape wadm requires and every field the host shim relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from host_shim.manifest import ManifestError, derived_id, load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
WADM = ROOT / "wadm.yaml"


def test_wadm_yaml_shape() -> None:
    document = yaml.safe_load(WADM.read_text())
    assert document["apiVersion"] == "core.oam.dev/v1beta1"
    assert document["kind"] == "Application"
    assert document["metadata"]["annotations"]["version"]  # wash app deploy needs it
    manifest = load_manifest(WADM)
    component = manifest.components["example"]
    provider = manifest.components["sqldb-postgres"]
    assert component.type == "component" and provider.type == "capability"
    assert component.id == "sqldb_postgres_example-example"  # as wadm derives ids
    assert manifest.image_path(component) == ROOT / "components/example/build/example.wasm"
    (link,) = manifest.links
    assert (link.source, link.target) == ("example", "sqldb-postgres")
    assert (link.namespace, link.package) == ("wasmcloud", "postgres")
    assert link.interfaces == ("query", "prepared", "transactions") and link.name == "default"
    assert {"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USERNAME", "POSTGRES_DATABASE"} <= set(
        link.target_config
    )
    assert "POSTGRES_PASSWORD" not in link.target_config  # the password is a secret reference
    (secret,) = link.target_secrets
    assert secret.name == "POSTGRES_PASSWORD" and secret.policy and secret.key
    policies = {p["name"] for p in document["spec"].get("policies", [])}
    assert secret.policy in policies


def test_derived_ids_follow_wadm() -> None:
    # The example in ../shared/spec/wadm.md.
    assert (
        derived_id("rust-sqldb-postgres-query", "sqldb-postgres")
        == "rust_sqldb_postgres_query-sqldb_postgres"
    )
    assert derived_id("My App", "db.Provider") == "my_app-db_provider"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["metadata"].pop("annotations"), "metadata.annotations is required"),
        (lambda d: d.update(kind="Deployment"), "kind must be Application"),
        (
            lambda d: d["spec"]["components"][0].update(type="actor"),
            "must be component or capability",
        ),
        (lambda d: d["spec"]["components"][0]["properties"].pop("image"), "image is required"),
        (
            lambda d: d["spec"]["components"][0]["traits"][1]["properties"]["target"].update(
                name="nowhere"
            ),
            "targets unknown component nowhere",
        ),
    ],
)
def test_bad_manifests_are_refused_with_the_field_named(change: object, message: str) -> None:
    document = yaml.safe_load(WADM.read_text())
    change(document)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        parse_manifest(yaml.safe_dump(document))
