"""The session every call expects, stated where a pooler cannot lose it.

The text parsers read dates, intervals, money and floats as PostgreSQL prints them under
`SESSION_SETTINGS`, and every statement is bounded by the link's `POSTGRES_STATEMENT_TIMEOUT`.
A connection first offers them as startup parameters, where they are the session's own
values (`RESET ALL` comes back to them); a pooler refuses the ones it does not know
(PgBouncer: `unsupported startup parameter: IntervalStyle`), and the connection is then opened
without them. A direct session opened that way gets them as `SET`s (and again after every
reset, since `RESET ALL` goes back to the server's defaults); a call behind a pooler gets them
as `SET LOCAL`s in the same message as its own `BEGIN`, so they hold for its transaction and
leave nothing behind on a server connection other clients share.
"""

from __future__ import annotations

from provider.postgres.config import ConnectionSettings
from provider.postgres.values.convert import SESSION_SETTINGS


def startup_parameters(settings: ConnectionSettings) -> dict[str, str]:
    """The settings as startup parameters (values unquoted)."""
    timeout = f"{round(settings.statement_timeout * 1000)}ms"
    return {**SESSION_SETTINGS, "statement_timeout": timeout}


def refused_startup_parameter(error: BaseException) -> bool:
    """A pooler's answer to a startup parameter it does not know (08P01)."""
    return "unsupported startup parameter" in str(error)


def session_values(settings: ConnectionSettings) -> dict[str, str]:
    """Each setting's value, as PostgreSQL reads it after `SET name =`."""
    return {name: f"'{value}'" for name, value in startup_parameters(settings).items()}


def set_session(settings: ConnectionSettings) -> str:
    """The statements that give a direct session what every call expects."""
    return " ".join(f"SET {name} = {value};" for name, value in session_values(settings).items())


def set_local(settings: ConnectionSettings) -> str:
    """The same for one transaction only (run right after its BEGIN, in the same message)."""
    return " ".join(
        f"SET LOCAL {name} = {value};" for name, value in session_values(settings).items()
    )


def pooled_begin(settings: ConnectionSettings, begin: str = "BEGIN") -> str:
    """`begin` and the settings, as one simple query: one round trip, one server connection."""
    return f"{begin}; {set_local(settings)}"
