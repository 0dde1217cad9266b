"""The lattice connection's pure parts: permission denials, causes, TLS and window settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest
from nats.errors import AuthorizationError, NoServersError
from nats.errors import Error as NatsError

from provider.lattice.host_data import HostData
from provider.lattice.lattice_connection import (
    DEFAULT_CONNECT_TIMEOUT,
    LatticeUnavailable,
    PermissionDenial,
    connect_window,
    credentials,
    describe,
    permission_denial,
    refuses_credentials,
    subject_family,
    tls_context,
)


@pytest.mark.parametrize(
    ("text", "denial"),
    [
        ('nats: permissions violation for subscription to "a.b.>"', ("subscribe", "a.b.>")),
        (
            'nats: Permissions Violation for Subscription to "l.p.wrpc.0.0.1.x" using queue "l.p"',
            ("subscribe", "l.p.wrpc.0.0.1.x"),
        ),
        (
            'nats: permissions violation for publish to "$KV.bucket.key"',
            ("publish", "$KV.bucket.key"),
        ),
        ("nats: 'Authorization Violation'", None),
        ("nats: stale connection", None),
    ],
)
def test_permission_denials_are_parsed_from_the_servers_text(
    text: str, denial: tuple[str, str] | None
) -> None:
    expected = PermissionDenial(*denial) if denial else None
    assert permission_denial(text) == expected


def test_per_call_subjects_are_logged_as_one_family() -> None:
    assert subject_family("_INBOX.abc.results") == "_INBOX.*.results"
    assert subject_family("_inbox.abc.results") == "_INBOX.*.results"  # as nats-py reports it
    assert subject_family("_INBOX.abc") == "_INBOX.*"
    assert subject_family("_INBOX.abc.7.results") == "_INBOX.*.*.results"
    assert subject_family("$kv.bucket.a") == "$KV.bucket.>"
    assert subject_family("$KV.bucket.a.b") == "$KV.bucket.>"
    assert subject_family("$JS.API.STREAM.INFO.x") == "$JS.API.>"
    assert subject_family("lattice.provider.wrpc.0.0.1.f") == "lattice.provider.wrpc.0.0.1.f"


def test_causes_name_what_went_wrong_in_one_line() -> None:
    assert refuses_credentials(AuthorizationError())
    assert refuses_credentials(NatsError("nats: 'Authorization Violation'"))
    assert refuses_credentials(NatsError("nats: 'user authentication expired'"))
    assert not refuses_credentials(NatsError("nats: stale connection"))
    assert "wrong seed" in describe(NatsError("nats: 'Authorization Violation'"))
    assert "has expired" in describe(NatsError("nats: 'User Authentication Expired'"))
    assert "was revoked" in describe(NatsError("nats: 'User Authentication Revoked'"))
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    assert describe(verify) == (
        "TLS: the server's certificate is not trusted (unable to get local issuer certificate); "
        "set NATS_TLS_CA in the provider config to its CA"
    )
    assert describe(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert describe(TimeoutError()) == "timed out"
    assert describe(NoServersError()) == "no server could be reached"
    assert describe(None) == "no answer from the server"
    for text in (describe(AuthorizationError()), describe(verify)):
        assert "\n" not in text


def test_the_tls_ca_comes_from_pem_text_or_a_path_and_a_bad_one_is_refused(
    tmp_path: Path,
) -> None:
    assert tls_context({}).verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(LatticeUnavailable, match="NATS_TLS_CA cannot be loaded"):
        tls_context({"NATS_TLS_CA": str(tmp_path / "missing.pem")})
    with pytest.raises(LatticeUnavailable, match="NATS_TLS_CA cannot be loaded"):
        tls_context({"NATS_TLS_CA": "-----BEGIN CERTIFICATE-----\nnot base64\n"})


def test_the_connect_window_is_configurable_and_falls_back_to_its_default() -> None:
    assert connect_window({}) == DEFAULT_CONNECT_TIMEOUT
    assert connect_window({"NATS_CONNECT_TIMEOUT": "2.5"}) == 2.5
    assert connect_window({"NATS_CONNECT_TIMEOUT": "soon"}) == DEFAULT_CONNECT_TIMEOUT
    assert connect_window({"NATS_CONNECT_TIMEOUT": "0"}) == DEFAULT_CONNECT_TIMEOUT


def test_credentials_are_built_only_from_both_jwt_and_seed() -> None:
    assert credentials(HostData()) is None
    assert credentials(HostData(lattice_rpc_user_jwt="eyJ")) is None
    seed = nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER).decode()
    document = credentials(HostData(lattice_rpc_user_jwt="eyJ.x.y", lattice_rpc_user_seed=seed))
    assert document is not None and "eyJ.x.y" in str(document) and seed in str(document)
    with pytest.raises(LatticeUnavailable, match="not a valid NATS user seed") as refused:
        credentials(HostData(lattice_rpc_user_jwt="eyJ.x.y", lattice_rpc_user_seed="SUAbad"))
    assert "SUAbad" not in str(refused.value)
