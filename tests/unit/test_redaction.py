"""Secret values redacted in both log formats, tracebacks, context and WIT error values."""

from __future__ import annotations

import io
import json
import logging

import pytest

from provider.common.redaction import MAX_RELEASED, REDACTED, SecretRedactor
from provider.lattice.logs import JsonFormatter, RedactSecrets, TextFormatter
from provider.wit.values import Case, Err, Ok


def test_values_are_redacted_wherever_they_appear_and_short_ones_as_words() -> None:
    redactor = SecretRedactor()
    assert redactor.redact("nothing to hide") == "nothing to hide"
    redactor.add(["hunter2", "ab", "", "hunter2-long", "5432", "sql"])
    assert redactor.redact("pw=hunter2-long;x=hunter2") == f"pw={REDACTED};x={REDACTED}"
    # Short values only as whole words; one to three characters not at all.
    assert redactor.redact("db:5432 port 54321 ab sql_t") == f"db:{REDACTED} port 54321 ab sql_t"
    value = Err(Case("query-error", Case("unexpected", 'role "hunter2" denied')))
    assert redactor.redact_value(value) == Err(
        Case("query-error", Case("unexpected", f'role "{REDACTED}" denied'))
    )
    rows = Ok([["hunter2"]])
    assert redactor.redact_value(rows) is rows  # the guest's own data is never touched


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_both_log_formats_redact_message_context_and_traceback(
    formatter: logging.Formatter,
) -> None:
    secret = "s3cret-user-name"
    redactor = SecretRedactor()
    redactor.add([secret])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets(redactor))
    log = logging.getLogger(f"redaction-test-{id(formatter)}")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("link ready %s", f"{secret}@db", extra={"database": f"{secret}@h/db"})
        try:
            raise RuntimeError(f"cannot log in as {secret}")
        except RuntimeError:
            log.exception("failed", extra={"items": [secret, 1]})
    finally:
        log.removeHandler(handler)
    output = stream.getvalue()
    assert secret not in output
    assert output.count(REDACTED) >= 4
    if isinstance(formatter, JsonFormatter):
        first, second = (json.loads(line) for line in output.splitlines() if line.startswith("{"))
        assert first["database"] == f"{REDACTED}@h/db"
        assert "RuntimeError" in second["exception"]


def test_a_links_values_are_held_while_it_lives_and_released_into_a_bounded_memory() -> None:
    redactor = SecretRedactor()
    redactor.add(["hostdata-seed-value"])
    redactor.hold(("app", "default"), ["first-password"])
    redactor.hold(("app", "default"), ["second-password"])  # rotated: the old one stays
    assert redactor.redact("first-password second-password") == f"{REDACTED} {REDACTED}"
    redactor.release(("app", "default"))  # deleted: its values stay among the released
    assert redactor.redact("second-password") == REDACTED

    # Component churn, each deployment with a password of its own: the memory stays bounded,
    # the oldest released value goes first, HostData's never.
    for n in range(MAX_RELEASED + 10):
        redactor.hold((f"churn-{n}", "default"), [f"password-of-churn-{n:06d}"])
        redactor.release((f"churn-{n}", "default"))
    assert redactor.remembered() == MAX_RELEASED + 1
    assert redactor.redact("password-of-churn-000000") == "password-of-churn-000000"
    last = f"password-of-churn-{MAX_RELEASED + 9:06d}"
    assert redactor.redact(f"{last} hostdata-seed-value") == f"{REDACTED} {REDACTED}"


def test_a_value_two_links_hold_stays_while_either_does() -> None:
    redactor = SecretRedactor()
    redactor.hold(("a", "default"), ["shared-password"])
    redactor.hold(("b", "default"), ["shared-password"])
    for n in range(MAX_RELEASED + 1):  # pushes everything released out of memory
        redactor.hold((f"x-{n}", "default"), [f"other-password-{n:06d}"])
        redactor.release((f"x-{n}", "default"))
    redactor.release(("a", "default"))
    for n in range(MAX_RELEASED + 1):
        redactor.hold((f"y-{n}", "default"), [f"more-password-{n:06d}"])
        redactor.release((f"y-{n}", "default"))
    assert redactor.redact("shared-password") == REDACTED  # b still holds it
