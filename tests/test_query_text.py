"""What a span says of a statement's SQL: literals never, parameters and identifiers always."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from provider.observability.query_text import MAX_QUERY_TEXT, query_text, sanitized


def test_literals_become_markers_and_the_rest_stays() -> None:
    cases = {
        "SELECT * FROM t WHERE a = $1 AND b = 'x''y' AND c = 42":
            "SELECT * FROM t WHERE a = $1 AND b = ? AND c = ?",
        "ALTER ROLE app PASSWORD 'n3w-s3cret'": "ALTER ROLE app PASSWORD ?",
        "SELECT pgp_sym_encrypt(data, E'k\\'ey') FROM t1":
            "SELECT pgp_sym_encrypt(data, ?) FROM t1",
        'SELECT "weird ""col"" 1" FROM "T2"': 'SELECT "weird ""col"" 1" FROM "T2"',
        "SELECT $$dollar ' quoted$$, $fn$ body $$ inner $fn$": "SELECT ?, ?",
        "SELECT 1.5e-3, .5, X'1F', B'101', U&'d\\0061t' -- trailing secret\n":
            "SELECT ?, ?, ?, ?, ?  \n",
        "INSERT INTO t VALUES (1) /* a 'comment' */ RETURNING id":
            "INSERT INTO t VALUES (?)   RETURNING id",
        "SELECT 'unterminated secret": "SELECT ?",
        "SELECT $1::int4 + $2, t3.c4 FROM t3": "SELECT $1::int4 + $2, t3.c4 FROM t3",
    }  # fmt: skip
    for sql, expected in cases.items():
        assert sanitized(sql) == expected, sql


@given(st.text(alphabet=st.characters(blacklist_characters="'\\"), max_size=40))
def test_a_quoted_literals_content_never_shows(secret: str) -> None:
    for sql in (f"SELECT '{secret}'", f"SELECT E'{secret}'", f"SELECT $q${secret}$q$"):
        text = sanitized(sql)
        assert text == "SELECT ?", (sql, text)


def test_the_text_is_cut() -> None:
    assert len(query_text("SELECT a FROM t WHERE " + "x = y AND " * 1000)) == MAX_QUERY_TEXT
