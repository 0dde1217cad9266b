"""The provider archive tool: keys, claims, the PAR format (read back by an independent reader
following the host's rules), refusals with the host's wording, the CLI, OCI manifest checks."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import nkeys
import pytest

from provider_archive import __main__ as cli
from provider_archive.archive import (
    ArchiveError,
    ProviderArchive,
    build_archive,
    host_target,
    read_archive,
    rust_file_stem,
    sha256_upper,
    with_binary,
    write_archive,
)
from provider_archive.claims import ClaimsError, ProviderClaims, decode_claims, validate
from provider_archive.oci import OciError, check_blob, check_tag, par_layer
from provider_archive.signing_keys import (
    ISSUER,
    SUBJECT,
    NKeyPair,
    SigningKeyError,
    resolve_key,
)
from tests import independent_par_reader
from tests.archive_edits import Change, retarred

BINARY = b"\x7fELF" + bytes(range(256)) * 40
WORLD = b"\x00asm\x0d\x00\x01\x00" + b"world" * 10
NOW = int(time.time())


@pytest.fixture(scope="module")
def issuer() -> NKeyPair:
    return NKeyPair.generate(ISSUER)


@pytest.fixture(scope="module")
def subject() -> NKeyPair:
    return NKeyPair.generate(SUBJECT)


def template(subject: NKeyPair, **fields: object) -> ProviderClaims:
    claims = ProviderClaims(
        issuer="", subject=subject.public_key, vendor="acme", name="sqldb-postgres"
    )
    return replace(claims, version="0.2.0", revision=0, **fields)  # type: ignore[arg-type]


def an_archive(issuer: NKeyPair, subject: NKeyPair, **fields: object) -> ProviderArchive:
    return build_archive(template(subject, **fields), {"x86_64-linux": BINARY}, WORLD, issuer, NOW)


# --- keys ---------------------------------------------------------------------------------


def test_keys_have_the_wascap_roles_and_nkeys_reads_the_account_seed(issuer: NKeyPair) -> None:
    subject = NKeyPair.generate(SUBJECT)
    assert issuer.public_key.startswith("A") and issuer.seed.startswith("SA")
    assert subject.public_key.startswith("V") and subject.seed.startswith("SV")
    assert len(issuer.public_key) == 56 and len(issuer.seed) == 58
    # The PyPI nkeys library (account keys only) derives the same public key and signature.
    reference = nkeys.from_seed(issuer.seed.encode())
    assert reference.public_key.decode() == issuer.public_key
    assert reference.sign(b"message") == issuer.sign(b"message")
    assert NKeyPair.from_seed(SUBJECT, subject.seed).public_key == subject.public_key
    assert issuer.seed not in repr(issuer)


def test_a_seed_of_the_wrong_role_is_refused(issuer: NKeyPair) -> None:
    with pytest.raises(SigningKeyError, match="WASH_SUBJECT_KEY: not a service seed"):
        NKeyPair.from_seed(SUBJECT, issuer.seed)
    with pytest.raises(SigningKeyError, match="checksum"):
        NKeyPair.from_seed(ISSUER, issuer.seed[:-2] + ("AA" if issuer.seed[-2:] != "AA" else "BB"))


def test_keys_from_a_seed_from_a_file_and_generated_once(
    tmp_path: Path, issuer: NKeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    from_seed = resolve_key(ISSUER, "me", tmp_path, {"WASH_ISSUER_KEY": issuer.seed})
    assert from_seed.public_key == issuer.public_key
    seed_file = tmp_path / "issuer.nk"
    seed_file.write_text(issuer.seed + "\n")
    from_file = resolve_key(ISSUER, "me", tmp_path, {"WASH_ISSUER_KEY": str(seed_file)})
    assert from_file.public_key == issuer.public_key
    assert not list(tmp_path.glob("*_account.nk"))  # nothing generated when a key is given

    generated = resolve_key(SUBJECT, "sqldb-postgres", tmp_path / "keys", {})
    assert "generated a new service key" in capsys.readouterr().err
    key_file = tmp_path / "keys" / "sqldb-postgres_service.nk"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = resolve_key(SUBJECT, "sqldb-postgres", tmp_path / "keys", {})
    assert again.public_key == generated.public_key
    assert "generated" not in capsys.readouterr().err
    with pytest.raises(SigningKeyError, match="neither a seed nor a readable file"):
        resolve_key(ISSUER, "me", tmp_path, {"WASH_ISSUER_KEY": "/no/such/key.nk"})


# --- claims -------------------------------------------------------------------------------


def test_claims_are_wascap_json_in_a_compact_ed25519_jwt(
    issuer: NKeyPair, subject: NKeyPair
) -> None:
    archive = an_archive(issuer, subject)
    header, body, _ = archive.token.split(".")
    assert json.loads(independent_par_reader._unpad_b64url(header)) == {
        "typ": "jwt",
        "alg": "Ed25519",
    }
    claims = json.loads(independent_par_reader._unpad_b64url(body))
    assert list(claims) == ["jti", "iat", "iss", "sub", "wascap", "wascap_revision"]
    assert len(claims["jti"]) == 22 and claims["jti"].isalnum()
    assert claims["iat"] == NOW and claims["wascap_revision"] == 3
    assert claims["iss"] == issuer.public_key and claims["sub"] == subject.public_key
    assert claims["wascap"] == {
        "name": "sqldb-postgres",
        "vendor": "acme",
        "rev": 0,
        "ver": "0.2.0",
        "target_hashes": {"x86_64-linux": sha256_upper(BINARY), "world.wasm": sha256_upper(WORLD)},
    }
    assert validate(archive.token, NOW) == archive.claims


def test_every_signing_gets_a_new_jti(issuer: NKeyPair, subject: NKeyPair) -> None:
    assert an_archive(issuer, subject).claims.jti != an_archive(issuer, subject).claims.jti


def segments_with(token: str, index: int, document: object) -> str:
    parts = token.split(".")
    raw = json.dumps(document, separators=(",", ":")).encode()
    parts[index] = independent_par_reader.base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return ".".join(parts)


def test_validate_refuses_what_wascap_and_the_secrets_backend_refuse(
    issuer: NKeyPair, subject: NKeyPair
) -> None:
    token = an_archive(issuer, subject).token
    claims = json.loads(independent_par_reader._unpad_b64url(token.split(".")[1]))
    cases = {
        "invalid token format, expected 3 segments, found 2": token.rsplit(".", 1)[0],
        "Invalid JWT algorithm. WASCAP only supports Ed25519": segments_with(
            token, 0, {"typ": "jwt", "alg": "HS256"}
        ),
        "JWT error: Invalid header": segments_with(token, 0, {"typ": "JOSE", "alg": "Ed25519"}),
        "signature is not valid": segments_with(token, 1, {**claims, "iat": NOW + 1}),
        "token expired at `": an_archive(issuer, subject, expires=NOW - 10).token,
        "token cannot be used before `": an_archive(issuer, subject, not_before=NOW + 60).token,
        "No metadata found": segments_with(
            token, 1, {k: v for k, v in claims.items() if k != "wascap"}
        ),
    }
    for message, bad in cases.items():
        with pytest.raises(ClaimsError, match=message.replace(".", r"\.").replace("`", "")):
            validate(bad, NOW)
    # A host decodes claims without checking the signature (it only hashes at start).
    assert decode_claims(cases["signature is not valid"]).issued_at == NOW + 1


def test_claims_signed_by_another_key_are_refused(issuer: NKeyPair, subject: NKeyPair) -> None:
    token = an_archive(issuer, subject).token
    impostor = an_archive(NKeyPair.generate(ISSUER), subject).token
    forged = ".".join(impostor.split(".")[:2] + token.split(".")[2:])
    with pytest.raises(ClaimsError, match="signature is not valid"):
        validate(forged, NOW)


# --- the archive --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_the_archive_is_what_the_host_reads(
    issuer: NKeyPair, subject: NKeyPair, compress: bool
) -> None:
    data = write_archive(an_archive(issuer, subject), compress=compress)
    assert (data[:2] == b"\x1f\x8b") is compress
    independent = independent_par_reader.read(data)
    assert independent["names"] == ["claims.jwt", "world.wasm", "x86_64-linux.bin"]
    assert independent["header"] == b'{"typ":"jwt","alg":"Ed25519"}'
    assert independent["files"]["x86_64-linux.bin"] == BINARY
    ours = read_archive(data, target="x86_64-linux")
    assert ours.binaries == {"x86_64-linux": BINARY} and ours.world == WORLD
    assert ours.claims == decode_claims(independent["files"]["claims.jwt"].decode())


def test_a_host_loads_only_its_own_target(issuer: NKeyPair, subject: NKeyPair) -> None:
    archive = an_archive(issuer, subject)
    both = with_binary(archive, "aarch64-linux", b"arm binary", issuer, NOW + 5)
    data = write_archive(both)
    assert independent_par_reader.read(data)["names"][-2:] == [
        "x86_64-linux.bin",
        "aarch64-linux.bin",
    ]
    assert set(read_archive(data).binaries) == {"x86_64-linux", "aarch64-linux"}
    assert set(read_archive(data, target="aarch64-linux").binaries) == {"aarch64-linux"}
    assert both.claims.jti != archive.claims.jti and both.claims.issued_at == NOW + 5
    with pytest.raises(ArchiveError, match="Not enough files found in provider archive"):
        read_archive(data, target="x86_64-windows")


def test_refusals_use_the_hosts_wording(issuer: NKeyPair, subject: NKeyPair) -> None:
    data = write_archive(an_archive(issuer, subject))

    def tamper_binary(name: str, content: bytes) -> tuple[str, bytes]:
        return name, content[:-1] + b"X" if name.endswith(".bin") else content

    def tamper_world(name: str, content: bytes) -> tuple[str, bytes]:
        return name, content + b"\x00" if name == "world.wasm" else content

    def drop_claims(name: str, content: bytes) -> tuple[str, bytes] | None:
        return None if name == "claims.jwt" else (name, content)

    def lower_case_hashes(name: str, content: bytes) -> tuple[str, bytes]:
        if name != "claims.jwt":
            return name, content
        token = content.decode()
        claims = json.loads(independent_par_reader._unpad_b64url(token.split(".")[1]))
        hashes = claims["wascap"]["target_hashes"]
        claims["wascap"]["target_hashes"] = {k: v.lower() for k, v in hashes.items()}
        return name, segments_with(token, 1, claims).encode()

    def without_hash(key: str) -> Change:
        def change(name: str, content: bytes) -> tuple[str, bytes]:
            if name != "claims.jwt":
                return name, content
            token = content.decode()
            claims = json.loads(independent_par_reader._unpad_b64url(token.split(".")[1]))
            del claims["wascap"]["target_hashes"][key]
            return name, segments_with(token, 1, claims).encode()

        return change

    cases = [
        (tamper_binary, "File hash and verify hash do not match for 'x86_64-linux'"),
        (lower_case_hashes, "File hash and verify hash do not match for 'x86_64-linux'"),
        (tamper_world, "WIT interface hash does not match"),
        (without_hash("world.wasm"), "WIT interface present but no hash found in claims"),
        (without_hash("x86_64-linux"), "no hash for target 'x86_64-linux'"),
        (drop_claims, "Not enough files found in provider archive. Is this a complete archive?"),
    ]
    for change, message in cases:
        with pytest.raises(ArchiveError, match=message.replace(".", r"\.").replace("?", r"\?")):
            read_archive(retarred(data, change), target="x86_64-linux")
    with pytest.raises(ArchiveError, match="Not enough bytes to be a valid PAR file"):
        read_archive(b"\x1f")
    with pytest.raises(ArchiveError, match="failed to load provider archive"):
        read_archive(gzip.compress(b"not a tar")[:30])


def test_directory_entries_and_pax_headers_are_refused(issuer: NKeyPair, subject: NKeyPair) -> None:
    data = write_archive(an_archive(issuer, subject))
    for variant in ("directory", "pax"):
        buffer = io.BytesIO()
        tar_format = tarfile.PAX_FORMAT if variant == "pax" else tarfile.GNU_FORMAT
        headers = {"comment": "global"} if variant == "pax" else {}
        with tarfile.open(fileobj=buffer, mode="w", format=tar_format, pax_headers=headers) as tar:
            if variant == "directory":
                directory = tarfile.TarInfo("bin")
                directory.type = tarfile.DIRTYPE
                tar.addfile(directory)
            with tarfile.open(fileobj=io.BytesIO(data)) as source:
                for member in source.getmembers():
                    tar.addfile(member, source.extractfile(member))
        message = "not a regular file" if variant == "directory" else "PAX global header"
        with pytest.raises(ArchiveError, match=message):
            read_archive(buffer.getvalue())


@pytest.mark.parametrize(
    ("path", "stem"),
    [
        ("claims.jwt", "claims"),
        ("x86_64-linux.bin", "x86_64-linux"),
        ("dir/world.wasm", "world"),
        ("./x86_64-linux.bin", "x86_64-linux"),
        ("archive.tar.gz", "archive.tar"),
        (".hidden", ".hidden"),
        ("noextension", "noextension"),
        ("./", None),
        ("a/..", None),
    ],
)
def test_entries_are_classified_by_rusts_file_stem(path: str, stem: str | None) -> None:
    assert rust_file_stem(path) == stem


def test_the_host_target_is_arch_dash_os() -> None:
    assert host_target("x86_64", "Linux") == "x86_64-linux"
    assert host_target("arm64", "Darwin") == "aarch64-macos"
    assert host_target("AMD64", "Windows") == "x86_64-windows"


# --- the command line ---------------------------------------------------------------------


def test_create_inspect_insert_from_the_command_line(
    tmp_path: Path,
    issuer: NKeyPair,
    subject: NKeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WASH_ISSUER_KEY", issuer.seed)
    monkeypatch.setenv("WASH_SUBJECT_KEY", subject.seed)
    binary, world, par = tmp_path / "provider", tmp_path / "world.wasm", tmp_path / "p.par"
    binary.write_bytes(BINARY)
    world.write_bytes(WORLD)
    keys = ["--keys-dir", str(tmp_path / "keys")]
    assert cli.main(["create", "--binary", str(binary), "--world", str(world),
                     "--output", str(par), *keys]) == 0  # fmt: skip
    assert cli.main(["inspect", str(par), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["name"] == "sqldb-postgres" and summary["version"] == "0.2.0"
    assert summary["issuer"] == issuer.public_key and summary["service"] == subject.public_key
    assert summary["targets"] == ["x86_64-linux"] and summary["revision"] == 0

    arm = tmp_path / "arm"
    arm.write_bytes(b"arm binary")
    assert cli.main(["insert", str(par), "--binary", str(arm), "--target", "aarch64-linux",
                     *keys]) == 0  # fmt: skip
    assert cli.main(["inspect", str(par)]) == 0
    table = capsys.readouterr().out
    assert "sqldb-postgres - Capability Provider" in table
    assert f"Account    {issuer.public_key}" in table
    assert "aarch64-linux" in table and "x86_64-linux" in table
    assert not (tmp_path / "keys").exists()  # keys came from the environment

    tampered = par.read_bytes().replace(b"arm binary", b"ARM binary")
    par.write_bytes(tampered)
    assert cli.main(["inspect", str(par)]) == 1
    assert "File hash and verify hash do not match for 'aarch64-linux'" in capsys.readouterr().err


def test_inspect_refuses_a_bad_signature(
    tmp_path: Path, issuer: NKeyPair, subject: NKeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = an_archive(issuer, subject)
    claims = json.loads(independent_par_reader._unpad_b64url(archive.token.split(".")[1]))
    forged = segments_with(
        archive.token, 1, {**claims, "wascap": {**claims["wascap"], "vendor": "evil"}}
    )
    par = tmp_path / "forged.par"
    par.write_bytes(write_archive(replace(archive, token=forged)))
    read_archive(par.read_bytes())  # a host would start it: it checks hashes only
    assert cli.main(["inspect", str(par)]) == 1
    assert "error: signature is not valid" in capsys.readouterr().err


# --- OCI manifests ------------------------------------------------------------------------

LAYER = {
    "mediaType": "application/vnd.wasmcloud.provider.archive.layer.v1+par",
    "digest": "sha256:" + "0" * 64,
    "size": 1,
}


def test_manifests_are_checked_as_the_hosts_oci_client_does() -> None:
    manifest = {"schemaVersion": 2, "config": {}, "layers": [LAYER]}
    assert par_layer(manifest) == LAYER
    media = {**manifest, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    assert par_layer(media) == LAYER
    tar_layer = {**LAYER, "mediaType": "application/vnd.oci.image.layer.v1.tar"}
    assert par_layer({**manifest, "layers": [tar_layer]}) == tar_layer
    refused = [
        ({**manifest, "mediaType": "application/vnd.oci.image.index.v1+json"}, "image manifest"),
        ({**manifest, "layers": [LAYER, LAYER]}, "exactly one layer"),
        ({**manifest, "layers": [{**LAYER, "mediaType": "text/plain"}]}, "not a provider"),
        ({**manifest, "schemaVersion": 1}, "schemaVersion 2"),
    ]
    for bad, message in refused:
        with pytest.raises(OciError, match=message):
            par_layer(bad)
    with pytest.raises(OciError, match="does not match its digest"):
        check_blob(b"x", LAYER)


def test_latest_is_refused_unless_allowed() -> None:
    check_tag("127.0.0.1:5000/sqldb-postgres:0.2.0", {})
    for reference in ("ghcr.io/you/sqldb-postgres:latest", "ghcr.io/you/sqldb-postgres"):
        with pytest.raises(OciError, match="latest tag is refused"):
            check_tag(reference, {})
        check_tag(reference, {"WASMCLOUD_OCI_ALLOW_LATEST": "true"})
    check_tag("localhost:5000/p@sha256:" + "0" * 64, {})
