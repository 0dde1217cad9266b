"""Real NATS servers with real security, for tests: decentralized JWT auth and TLS.

`mint_operator` / `mint_account` / `mint_user` sign NATS JWT v2 claims with fresh nkeys, the way
nats-io/jwt (Go, v2) does, so nats-server accepts them without `nsc`. `running_operator_nats`
runs a server trusting an operator with accounts preloaded in memory; `running_tls_nats` runs one
that requires TLS, with a throwaway CA made by the `openssl` CLI. Nothing here is mocked: the
tests that use these see the server's own verdicts (authorization, expiry, permissions, TLS).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from devkit.local_nats import free_port, nats_server_executable, stop_process, tcp_answers
from provider.lattice.nkey_text import decode_seed, encode_public, encode_seed, seed_prefix

# The Go library's header for v2 JWTs (`ed25519` is the v1 algorithm name, refused for v2).
JWT_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
JWT_VERSION = 2
# nkey role prefixes, as in nats-io/nkeys (the first base32 letter of a public key).
PREFIX_OPERATOR = 14 << 3  # 'O'
PREFIX_ACCOUNT = 0  # 'A'
PREFIX_USER = 20 << 3  # 'U'
NO_LIMIT = -1
SERVER_START_TIMEOUT = 15.0


def _b64url(data: bytes) -> str:
    # JWT segments are base64url without padding (Go's base64.RawURLEncoding).
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _compact_json(value: Any) -> bytes:
    # Go's json.Marshal writes no whitespace; keep the same bytes so the jti hash matches.
    return json.dumps(value, separators=(",", ":")).encode()


def new_keypair(prefix: int) -> tuple[str, str]:
    """A fresh nkey of the role `prefix` (PREFIX_*): (seed, public key) as text."""
    signing_key = SigningKey.generate()
    public = encode_public(prefix, signing_key.verify_key.encode())
    return encode_seed(prefix, signing_key.encode()), public


def _signing_key(seed: str) -> tuple[SigningKey, str]:
    """The Ed25519 key of an nkey seed of any role, and the public key text of that role."""
    prefix = seed_prefix(seed)
    signing_key = SigningKey(decode_seed(seed, prefix, "signing"))
    return signing_key, encode_public(prefix, signing_key.verify_key.encode())


def sign_nonce(seed: str, nonce: str) -> bytes:
    """What a nats-py `signature_cb` returns: base64 of the seed's signature over the nonce."""
    signing_key, _public = _signing_key(seed)
    return base64.b64encode(signing_key.sign(nonce.encode()).signature)


def _unix_seconds(moment: float | datetime.datetime) -> int:
    if isinstance(moment, datetime.datetime):
        return int(moment.timestamp())
    return int(moment)


def jti_for(claims: dict[str, Any]) -> str:
    """The `jti` nats-io/jwt computes: base32 (no padding) of SHA-512/256 over the JSON of the
    standard claims only (aud, exp, jti, iat, iss, name, nbf, sub, in Go's field order, empty
    ones omitted, jti empty). nats-server never recomputes it, but a faithful one costs nothing.
    """
    order = ("aud", "exp", "jti", "iat", "iss", "name", "nbf", "sub")
    standard = {key: claims[key] for key in order if key != "jti" and claims.get(key)}
    digest = hashlib.new("sha512_256", _compact_json(standard)).digest()
    return base64.b32encode(digest).decode().rstrip("=")


def encode_jwt(
    issuer_seed: str,
    subject: str,
    name: str,
    nats_claims: dict[str, Any],
    expires_at: float | datetime.datetime | None = None,
) -> str:
    """Sign NATS JWT v2 claims with `issuer_seed` (an operator or account seed).

    `nats_claims` is the role-specific `nats` object; `type` and `version` go in by the caller.
    """
    issuer, issuer_public = _signing_key(issuer_seed)
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer_public,
        "name": name,
        "sub": subject,
    }
    if expires_at is not None:
        claims["exp"] = _unix_seconds(expires_at)
    claims["jti"] = jti_for(claims)
    claims["nats"] = nats_claims
    signed_part = f"{_b64url(_compact_json(JWT_HEADER))}.{_b64url(_compact_json(claims))}"
    # V2 signs header and payload together (v1 signed the payload alone).
    signature = issuer.sign(signed_part.encode("ascii")).signature
    return f"{signed_part}.{_b64url(signature)}"


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for assertions on what was minted)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


@dataclass(frozen=True)
class Operator:
    seed: str
    public: str
    jwt: str


@dataclass(frozen=True)
class Account:
    seed: str
    public: str
    jwt: str
    operator_public: str


@dataclass(frozen=True)
class User:
    seed: str
    public: str
    jwt: str
    account_public: str

    def creds(self) -> str:
        """The `.creds` text (`nsc` format) nats-py reads from a path or a RawCredentials."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seed}\n"
            "------END USER NKEY SEED------\n\n"
            "*************************************************************\n"
        )


def mint_operator(name: str = "test-operator") -> Operator:
    seed, public = new_keypair(PREFIX_OPERATOR)
    token = encode_jwt(seed, public, name, {"type": "operator", "version": JWT_VERSION})
    return Operator(seed=seed, public=public, jwt=token)


def mint_account(operator: Operator, name: str = "test-account", jetstream: bool = True) -> Account:
    """An account signed by `operator`, unlimited; with JetStream unless `jetstream=False`.

    The server enables JetStream for an account when mem_storage or disk_storage is non-zero
    (-1 = no limit); absent (Go's 0 default) means none, which is what `jetstream=False` leaves.
    """
    seed, public = new_keypair(PREFIX_ACCOUNT)
    limits: dict[str, Any] = {
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "imports": NO_LIMIT,
        "exports": NO_LIMIT,
        "wildcards": True,
        "conn": NO_LIMIT,
        "leaf": NO_LIMIT,
    }
    if jetstream:
        limits |= {
            "mem_storage": NO_LIMIT,
            "disk_storage": NO_LIMIT,
            "streams": NO_LIMIT,
            "consumer": NO_LIMIT,
        }
    nats_claims = {"limits": limits, "type": "account", "version": JWT_VERSION}
    token = encode_jwt(operator.seed, public, name, nats_claims)
    return Account(seed=seed, public=public, jwt=token, operator_public=operator.public)


def _permission(allow: Sequence[str] | None, deny: Sequence[str] | None) -> dict[str, list[str]]:
    # Go omits empty lists; an absent list means "no restriction" to the server.
    permission: dict[str, list[str]] = {}
    if allow:
        permission["allow"] = list(allow)
    if deny:
        permission["deny"] = list(deny)
    return permission


def mint_user(
    account: Account,
    allow_pub: Sequence[str] | None = None,
    allow_sub: Sequence[str] | None = None,
    deny_pub: Sequence[str] | None = None,
    deny_sub: Sequence[str] | None = None,
    expires_at: float | datetime.datetime | None = None,
    name: str = "test-user",
) -> User:
    """A user of `account`, signed by the account's own key (so no `issuer_account`).

    `expires_at` is a Unix time or a datetime; the server refuses the JWT after it.
    """
    seed, public = new_keypair(PREFIX_USER)
    nats_claims: dict[str, Any] = {}
    if pub := _permission(allow_pub, deny_pub):
        nats_claims["pub"] = pub
    if sub := _permission(allow_sub, deny_sub):
        nats_claims["sub"] = sub
    nats_claims |= {
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "type": "user",
        "version": JWT_VERSION,
    }
    token = encode_jwt(account.seed, public, name, nats_claims, expires_at)
    return User(seed=seed, public=public, jwt=token, account_public=account.public)


def _quoted(text: str) -> str:
    # nats-server config strings: JSON quoting is valid and safe for JWTs, keys and paths.
    return json.dumps(text)


@contextlib.contextmanager
def _running_server(config: str, workdir: Path, port: int, scheme: str) -> Iterator[str]:
    """Run nats-server with `config` until the context exits; yield its URL once it listens."""
    config_path = workdir / "nats.conf"
    config_path.write_text(config)
    log_path = workdir / "nats.log"
    command = [nats_server_executable(), "-c", str(config_path)]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not tcp_answers(f"nats://127.0.0.1:{port}", timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if process.poll() is not None else "did not listen"
                log = log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"nats-server {state} on port {port}:\n{log}")
            time.sleep(0.05)
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        stop_process(process)


@contextlib.contextmanager
def running_operator_nats(
    operator: Operator, accounts: Sequence[Account], system_account: Account | None = None
) -> Iterator[str]:
    """A nats-server in operator mode trusting `operator`, with `accounts` preloaded in memory.

    With JetStream on, operator mode needs a system account: without one nats-server 2.15 exits
    with "Can't start JetStream: ... system account not setup". So one is minted (unless given)
    and preloaded too. JetStream files go in a temporary directory. Yields
    `nats://127.0.0.1:<port>`.
    """
    system = system_account or mint_account(operator, name="SYS", jetstream=False)
    preload = {account.public: account.jwt for account in (*accounts, system)}
    with tempfile.TemporaryDirectory(prefix="nats-op-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        preload_lines = "".join(f"  {key}: {_quoted(jwt)}\n" for key, jwt in preload.items())
        config = (
            f"listen: {_quoted(f'127.0.0.1:{port}')}\n"
            f"operator: {_quoted(operator.jwt)}\n"
            f"system_account: {_quoted(system.public)}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n{preload_lines}}}\n"
            f"jetstream: {{ store_dir: {_quoted(str(workdir / 'js'))} }}\n"
        )
        with _running_server(config, workdir, port, "nats") as url:
            yield url


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _ec_key_args() -> list[str]:
    # P-256 keys are generated instantly (RSA takes noticeable time) and Go and Python accept them.
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(directory: Path, name: str = "test-ca") -> tuple[Path, Path]:
    """A self-signed CA in `directory`: (certificate PEM, key PEM), files named after `name`.

    basicConstraints and keyUsage are explicit rather than left to the machine's openssl.cnf,
    so the CA passes strict verification (ssl.VERIFY_X509_STRICT) wherever the tests run.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *_ec_key_args(), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_untrusted_ca(directory: Path) -> Path:
    """The PEM of a second CA that signed nothing: trusting only it must fail verification."""
    cert, _key = make_ca(directory, name="untrusted-ca")
    return cert


def make_tls_files(directory: Path) -> TlsFiles:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost."""
    ca_cert, ca_key = make_ca(directory)
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", *_ec_key_args(), "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr)
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return TlsFiles(ca_cert=ca_cert, ca_key=ca_key, server_cert=cert, server_key=key)


@contextlib.contextmanager
def running_tls_nats(cert_dir: Path) -> Iterator[tuple[str, Path]]:
    """A nats-server that requires TLS (no auth, JetStream on), certificates made in `cert_dir`.

    Yields (`tls://127.0.0.1:<port>`, the CA PEM that verifies the server).
    """
    files = make_tls_files(cert_dir)
    with tempfile.TemporaryDirectory(prefix="nats-tls-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        config = (
            f"listen: {_quoted(f'127.0.0.1:{port}')}\n"
            "tls {\n"
            f"  cert_file: {_quoted(str(files.server_cert))}\n"
            f"  key_file: {_quoted(str(files.server_key))}\n"
            "  timeout: 2\n"
            "}\n"
            f"jetstream: {{ store_dir: {_quoted(str(workdir / 'js'))} }}\n"
        )
        with _running_server(config, workdir, port, "tls") as url:
            yield url, files.ca_cert
