"""The secure NATS fixtures against real servers: each check is the server's own verdict."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client, RawCredentials

from tests.secure_nats import (
    Account,
    Operator,
    User,
    decode_jwt_claims,
    jti_for,
    make_untrusted_ca,
    mint_account,
    mint_operator,
    mint_user,
    running_operator_nats,
    running_tls_nats,
    sign_nonce,
)

# A user JWT minted by nats-io/jwt (Go), from nats.go's tests: its jti is the hash we recompute.
GO_MINTED_USER_JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJETFRGNFpLVVdNNFRPRkVNQko0UEUzTVFF"
    "VlhIUkJJN0xZNDdZNEMzNTNMWlJKSU5CUkJRIiwiaWF0IjoxNjI0ODg1NzMwLCJpc3MiOiJBQVlKRFZMWkdXTjdZM0ZC"
    "UENWWENSVlFaREZNWUdIVTRZWExHU1hYN1UyNTRLSDVTQzNSNVFLTSIsIm5hbWUiOiJ1c2VyIiwic3ViIjoiVUQzQkdX"
    "SUJQVTNDV0w0SE9VVTRWSkVRV1RVQVNBRUc2T0ozWEhNM0VFSk5BMlBBM1VWTllUWk4iLCJuYXRzIjp7InB1YiI6e30s"
    "InN1YiI6e30sInN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI6LTEsInR5cGUiOiJ1c2VyIiwidmVyc2lvbiI6Mn19"
    ".YmFL5nRMkEOXe77sQJPPRv_vwi89tzhVVl0AVjE4sXWyoWIHiCepNw28DbpJ0p_MlT8Qf0SY2cjAhIm-Qi7lDw"
)

# Fail fast: a refused connection must surface, not be retried.
NO_RETRY: dict[str, Any] = {
    "allow_reconnect": False,
    "max_reconnect_attempts": 0,
    "connect_timeout": 2,
}


@dataclasses.dataclass(frozen=True)
class OperatorSetup:
    operator: Operator
    account: Account
    url: str


@pytest.fixture(scope="module")
def operator_nats() -> Iterator[OperatorSetup]:
    operator = mint_operator()
    account = mint_account(operator)
    with running_operator_nats(operator, [account]) as url:
        yield OperatorSetup(operator, account, url)


class Errors:
    """An `error_cb` that keeps what the client reports (nats-py only logs by default)."""

    def __init__(self) -> None:
        self.seen: list[Exception] = []

    # A method, not __call__: nats-py insists on a coroutine *function* for its callbacks.
    async def record(self, error: Exception) -> None:
        self.seen.append(error)

    def texts(self) -> list[str]:
        return [str(error) for error in self.seen]


async def connect_as(url: str, user: User, errors: Errors | None = None) -> Client:
    return await nats.connect(
        url,
        user_credentials=RawCredentials(user.creds()),
        error_cb=(errors or Errors()).record,
        **NO_RETRY,
    )


def test_jti_is_the_hash_nats_io_jwt_computes() -> None:
    claims = decode_jwt_claims(GO_MINTED_USER_JWT)
    assert (
        jti_for(claims) == claims["jti"] == "DLTF4ZKUWM4TOFEMBJ4PE3MQEVXHRBI7LY47Y4C353LZRJINBRBQ"
    )


def test_minted_claims_have_the_v2_shape(operator_nats: OperatorSetup) -> None:
    account = decode_jwt_claims(operator_nats.account.jwt)
    assert account["iss"] == operator_nats.operator.public
    assert account["sub"] == operator_nats.account.public
    assert account["nats"]["type"] == "account" and account["nats"]["version"] == 2
    assert account["nats"]["limits"]["mem_storage"] == -1
    assert account["nats"]["limits"]["disk_storage"] == -1
    user = decode_jwt_claims(mint_user(operator_nats.account, deny_sub=["secret.>"]).jwt)
    assert user["iss"] == operator_nats.account.public
    assert user["nats"]["sub"] == {"deny": ["secret.>"]}
    assert "pub" not in user["nats"]


async def test_a_full_user_publishes_subscribes_and_uses_jetstream_kv(
    operator_nats: OperatorSetup,
) -> None:
    user = mint_user(operator_nats.account)
    nc = await connect_as(operator_nats.url, user)
    try:
        sub = await nc.subscribe("greet.*")
        await nc.publish("greet.world", b"hello")
        message = await sub.next_msg(timeout=2)
        assert (message.subject, message.data) == ("greet.world", b"hello")
        kv = await nc.jetstream().create_key_value(bucket="b")
        await kv.put("k", b"v")
        assert (await kv.get("k")).value == b"v"
    finally:
        await nc.close()

    # The callback pair (what a provider holding a JWT and a seed uses) is accepted too.
    nc = await nats.connect(
        operator_nats.url,
        user_jwt_cb=lambda: user.jwt.encode(),
        signature_cb=lambda nonce: sign_nonce(user.seed, nonce),
        error_cb=Errors().record,
        **NO_RETRY,
    )
    assert nc.is_connected
    await nc.close()


async def test_a_jwt_with_another_users_seed_is_an_authorization_violation(
    operator_nats: OperatorSetup,
) -> None:
    user, other = mint_user(operator_nats.account), mint_user(operator_nats.account)
    impostor = dataclasses.replace(user, seed=other.seed)
    errors = Errors()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_as(operator_nats.url, impostor, errors)
    assert errors.texts() == ["nats: 'Authorization Violation'"]


async def test_an_expired_user_jwt_is_refused(operator_nats: OperatorSetup) -> None:
    expired = mint_user(operator_nats.account, expires_at=time.time() - 5)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect_as(operator_nats.url, expired)
    # The same claims with an expiry ahead are fine: it is the time that is refused.
    valid = mint_user(operator_nats.account, expires_at=time.time() + 3600)
    nc = await connect_as(operator_nats.url, valid)
    assert nc.is_connected
    await nc.close()


async def test_a_denied_subscription_is_a_permissions_violation(
    operator_nats: OperatorSetup,
) -> None:
    user = mint_user(operator_nats.account, deny_sub=["secret.>"])
    errors = Errors()
    nc = await connect_as(operator_nats.url, user, errors)
    try:
        await nc.subscribe("secret.plans")
        allowed = await nc.subscribe("public.news")
        await nc.publish("public.news", b"ok")
        # The allowed round trip also proves the server has processed the earlier SUB.
        assert (await allowed.next_msg(timeout=2)).data == b"ok"
        for _ in range(40):  # the -ERR is handled by the reader task, maybe just after the MSG
            if errors.seen:
                break
            await asyncio.sleep(0.05)
        assert errors.texts() == ['nats: permissions violation for subscription to "secret.plans"']
        assert nc.is_connected  # a permissions violation does not cost the connection
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with running_tls_nats(tmp_path_factory.mktemp("certs")) as served:
        yield served


async def test_tls_with_the_test_ca_connects(tls_nats: tuple[str, Path]) -> None:
    url, ca = tls_nats
    context = ssl.create_default_context(cafile=str(ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the certificates pass strict checks too
    nc = await nats.connect(url, tls=context, error_cb=Errors().record, **NO_RETRY)
    try:
        sub = await nc.subscribe("over.tls")
        await nc.publish("over.tls", b"sealed")
        assert (await sub.next_msg(timeout=2)).data == b"sealed"
    finally:
        await nc.close()


async def test_tls_with_an_untrusted_ca_fails_verification(
    tls_nats: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ca = tls_nats
    context = ssl.create_default_context(cafile=str(make_untrusted_ca(tmp_path)))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await nats.connect(url, tls=context, error_cb=Errors().record, **NO_RETRY)
