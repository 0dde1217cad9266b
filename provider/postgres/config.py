"""A link's database settings, from its `POSTGRES_*` keys (target config merged with secrets)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

REQUIRED_KEYS = (
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USERNAME",
    "POSTGRES_PASSWORD",
    "POSTGRES_DATABASE",
)
TRUE_WORDS = {"true", "yes"}
# POSTGRES_POOLER: what stands between the provider and PostgreSQL. "transaction": a pooler
# that may move each transaction to another server connection (PgBouncer, Supavisor, ... in
# transaction mode), so no statement is kept on the server between calls; "none": the
# connection is a session of its own (direct, or a session-mode pooler, or PgBouncer >= 1.21
# with max_prepared_statements), so statements are kept; "auto": told apart per connection.
POOLER_MODES = {"auto": "auto", "transaction": "transaction", "none": "none", "session": "none"}


class ConfigError(ValueError):
    """A link's settings cannot reach a database; the message says which key and why."""


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    username: str
    password: str = field(repr=False)  # never logged
    database: str
    tls_required: bool
    tls_ca: str | None  # PEM text or a file path; verifies the server with a private CA
    pool_size: int
    max_statements: int
    statements_per_connection: int
    statement_timeout: float = 60.0  # seconds PostgreSQL lets one statement run; 0 = no bound
    acquire_timeout: float = 10.0  # seconds a call may wait for a free pool connection
    max_result_bytes: int = 64 * 1024 * 1024  # a result's size on the wire, at most
    max_transactions: int = 1  # open transactions per link (each holds a connection)
    transaction_idle_timeout: float = 30.0  # seconds between a transaction's calls, at most
    transaction_max_duration: float = 120.0  # seconds from begin to its end, at most
    pooler: str = "auto"  # POSTGRES_POOLER: "auto", "transaction" or "none" (see POOLER_MODES)
    server_connections: int | None = None  # POSTGRES_SERVER_CONNECTIONS: caps the server budget

    def describe(self) -> str:
        """Where this link points, for logs and health messages (no secrets)."""
        tls = " tls" if self.tls_required else ""
        return f"{self.username}@{self.host}:{self.port}/{self.database}{tls}"

    @property
    def server(self) -> str:
        """The server whose `max_connections` this link's connections count against."""
        return f"{self.host}:{self.port}"

    def pool_key(self) -> tuple[object, ...]:
        """Links with equal keys may share one pool (POSTGRES_SHARE_CONNECTIONS_BY_URL)."""
        return (self.host, self.port, self.username, self.password, self.database,
                self.tls_required, self.tls_ca, self.pool_size,
                self.statements_per_connection, self.statement_timeout,
                self.acquire_timeout, self.pooler)  # fmt: skip

    def ssl_context(self) -> ssl.SSLContext | None:
        """None without TLS; else a context that requires TLS and verifies the server."""
        if not self.tls_required:
            return None
        context = ssl.create_default_context()
        if self.tls_ca:
            try:
                if self.tls_ca.lstrip().startswith("-----BEGIN"):
                    context.load_verify_locations(cadata=self.tls_ca)
                else:
                    context.load_verify_locations(cafile=self.tls_ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"POSTGRES_TLS_CA cannot be loaded: {exc}") from None
        return context


def default_pool_size() -> int:
    # Upstream: 4 x physical CPUs; os.cpu_count() counts logical ones, close enough here.
    return 4 * (os.cpu_count() or 1)


def settings_from_config(values: Mapping[str, str]) -> ConnectionSettings:
    """Validate a link's merged config + secrets; `ConfigError` names what is wrong."""
    missing = [key for key in REQUIRED_KEYS if not values.get(key) and key != "POSTGRES_PASSWORD"]
    if "POSTGRES_PASSWORD" not in values:
        missing.append("POSTGRES_PASSWORD")
    if missing:
        raise ConfigError(f"missing required link config: {', '.join(missing)}")
    try:
        port = int(values["POSTGRES_PORT"])
    except ValueError:
        port = 5432  # upstream falls back to the default port for an unparsable value
    pool_size = _positive_int(values, "POSTGRES_POOL_SIZE", default_pool_size())
    max_statements = _positive_int(values, "POSTGRES_MAX_STATEMENTS", 10_000)
    per_connection = _positive_int(values, "POSTGRES_STATEMENTS_PER_CONNECTION", 256)
    tls_required = values.get("POSTGRES_TLS_REQUIRED", "").strip().lower() in TRUE_WORDS
    pooler_word = values.get("POSTGRES_POOLER", "").strip().lower() or "auto"
    if pooler_word not in POOLER_MODES:
        raise ConfigError(
            f"POSTGRES_POOLER must be one of {', '.join(POOLER_MODES)}, got {pooler_word!r}"
        )
    settings = ConnectionSettings(
        host=values["POSTGRES_HOST"],
        port=port,
        username=values["POSTGRES_USERNAME"],
        password=values["POSTGRES_PASSWORD"],
        database=values["POSTGRES_DATABASE"],
        tls_required=tls_required,
        tls_ca=values.get("POSTGRES_TLS_CA") or None,
        pool_size=pool_size,
        max_statements=max_statements,
        statements_per_connection=per_connection,
        statement_timeout=_seconds(
            values, "POSTGRES_STATEMENT_TIMEOUT", 60.0, zero_allowed=True, most=MAX_TIMEOUT
        ),
        acquire_timeout=_seconds(values, "POSTGRES_ACQUIRE_TIMEOUT", 10.0, zero_allowed=False),
        max_result_bytes=_positive_int(values, "POSTGRES_MAX_RESULT_BYTES", 64 * 1024 * 1024),
        # At most half the pool by default, so autocommit calls always find a connection.
        max_transactions=_positive_int(values, "POSTGRES_MAX_TRANSACTIONS", max(1, pool_size // 2)),
        transaction_idle_timeout=_seconds(
            values, "POSTGRES_TRANSACTION_IDLE_TIMEOUT", 30.0, zero_allowed=False, most=180
        ),
        transaction_max_duration=_seconds(
            values, "POSTGRES_TRANSACTION_MAX_DURATION", 120.0, zero_allowed=False, most=600
        ),
        pooler=POOLER_MODES[pooler_word],
        server_connections=_positive_int(values, "POSTGRES_SERVER_CONNECTIONS", 0) or None,
    )
    if settings.max_transactions > settings.pool_size:
        raise ConfigError(
            f"POSTGRES_MAX_TRANSACTIONS ({settings.max_transactions}) must not exceed "
            f"POSTGRES_POOL_SIZE ({settings.pool_size})"
        )
    settings.ssl_context()  # a CA that cannot be loaded is a config error, found now
    return settings


def _positive_int(values: Mapping[str, str], key: str, default: int) -> int:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a positive integer, got {raw!r}") from None
    if number < 1:
        raise ConfigError(f"{key} must be a positive integer, got {raw!r}")
    return number


# PostgreSQL keeps statement_timeout in int milliseconds.
MAX_TIMEOUT = (2**31 - 1) / 1000


def _seconds(
    values: Mapping[str, str],
    key: str,
    default: float,
    *,
    zero_allowed: bool,
    most: float = 86_400 * 365,
) -> float:
    raw = values.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 or (zero_allowed and seconds == 0)) or seconds > most:
        kind = "a number of seconds (0 = none)" if zero_allowed else "a positive number of seconds"
        raise ConfigError(f"{key} must be {kind} up to {most:g}, got {raw!r}")
    return seconds


def shares_connections(values: Mapping[str, str]) -> bool:
    return values.get("POSTGRES_SHARE_CONNECTIONS_BY_URL", "").strip().lower() in TRUE_WORDS
