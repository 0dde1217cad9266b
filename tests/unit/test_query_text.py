"""What a span says of a statement's SQL: literals never, parameters and identifiers always;
where PostgreSQL could read the text two ways, nothing from there on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provider.common.redaction import SecretRedactor
from provider.observability.query_text import MAX_QUERY_TEXT, error_text, query_text, sanitized
from provider.postgres.metrics import operation_name


def test_literals_become_markers_and_the_rest_stays() -> None:
    cases = {
        "SELECT * FROM t WHERE a = $1 AND b = 'x''y' AND c = 42":
            "SELECT * FROM t WHERE a = $1 AND b = ? AND c = ?",
        "ALTER ROLE app PASSWORD 'n3w-s3cret'": "ALTER ROLE app PASSWORD ?",
        "ALTER ROLE app PASSWORD'n3w-s3cret'": "ALTER ROLE app PASSWORD?",
        "SELECT text'hunter2!' , x FROM t WHERE y = 'z'": "SELECT text? , x FROM t WHERE y = ?",
        "SELECT pgp_sym_encrypt(data, E'k\\'ey') FROM t1":
            "SELECT pgp_sym_encrypt(data, ?) FROM t1",
        "SELECT x FROM t WHERE a = E'k3y\\": "SELECT x FROM t WHERE a = ?",
        'SELECT "weird ""col"" 1" FROM "T2"': 'SELECT "weird ""col"" 1" FROM "T2"',
        "SELECT $$dollar ' quoted$$, $fn$ body $$ inner $fn$": "SELECT ?, ?",
        "SELECT $€$ hunter2 $€$": "SELECT ?",
        "SELECT 1.5e-3, .5, X'1F', B'101', U&'d\\0061t' -- trailing secret\n":
            "SELECT ?, ?, ?, ?, ?  \n",
        "SELECT 1 -- c\r, 'a\n' , 'hunter2' , 'b'": "SELECT ?  \r, ? , ? , ?",
        "INSERT INTO t VALUES (1) /* a 'comment' */ RETURNING id":
            "INSERT INTO t VALUES (?)   RETURNING id",
        "/* a /* b */ ' */ SELECT 'secret' --'": " ?",  # nested: all the rest
        "SELECT 'unterminated secret": "SELECT ?",
        "SELECT 'x\\' hunter2 '": "SELECT ?",  # an escape if standard strings are off
        "SELECT 0xDEADBEEF, 0o17, 0b101, 1_000_000, 12abc, 1.2.3": "SELECT ?, ?, ?, ?, ?, ?",
        "SELECT €E'\\' , 'secret' , '\\'": "SELECT €E?",  # a plain '\\': fails closed
        "SELECT $1::int4 + $2, t3.c4 FROM t3": "SELECT $1::int4 + $2, t3.c4 FROM t3",
    }  # fmt: skip
    for sql, expected in cases.items():
        assert sanitized(sql) == expected, sql


SAFE = "abcXYZ019 ,()=<>+-*$_.;\n"  # SQL around a literal that opens none of its own
SECRET = "ŝęćŕęť"
NOBODY = SecretRedactor()  # no secret known: only what sanitizing does


@given(st.text(alphabet=SAFE, max_size=30), st.text(alphabet=SAFE, max_size=30))
def test_a_literals_content_never_shows_whatever_surrounds_it(before: str, after: str) -> None:
    for literal in (f"'{SECRET}'", f"E'{SECRET}'", f"$q${SECRET}$q$", f"'{SECRET}\\'"):
        sql = f"{before} {literal} {after}"
        assert SECRET not in sanitized(sql), sql


def test_the_text_is_cut_and_long_text_is_read_only_from_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(query_text("SELECT a FROM t WHERE " + "x = y AND " * 1000, NOBODY)) == MAX_QUERY_TEXT
    import provider.observability.query_text as module

    read: list[int] = []

    def measured(sql: str) -> str:
        read.append(len(sql))
        return sanitized(sql)

    monkeypatch.setattr(module, "sanitized", measured)
    huge = "SELECT a FROM t WHERE " + "x = y AND " * 200_000  # a 2 MB batch
    text = query_text(huge, NOBODY)
    assert read == [module.READ]  # only its start is scanned, once
    assert text == query_text(huge[: module.READ + 1], NOBODY)  # and the answer is the start's


def test_error_texts_lose_their_quoted_values() -> None:
    error = ValueError("invalid input syntax for type integer: \"hunter2\" near 'x'")
    assert error_text(error, NOBODY) == "invalid input syntax for type integer: ? near ?"


def test_operation_names() -> None:
    cases = {"COMMIT;": "COMMIT", "SELECT*FROM t": "SELECT", "select'a'": "SELECT",
             "  (SELECT 1)": "SELECT", "/* c */ -- d\nINSERT INTO t": "INSERT", "": "OTHER",
             "word1 x": "OTHER", "/* unterminated": "OTHER"}  # fmt: skip
    for sql, expected in cases.items():
        assert operation_name(sql) == expected, sql
