"""`wit/` is the single source of truth: the stored resolution and the spec must agree with it."""

from __future__ import annotations

from provider.wit.model import (
    EnumType,
    OptionType,
    Primitive,
    RecordType,
    ResultType,
    TupleType,
    VariantType,
    load_resolved_json,
    package_from_resolved,
    postgres_package,
)
from provider.wit.resolve import render, resolve_wit

# The 97 pg-value cases in wire order, as ../shared/spec/wasmcloud-postgres.md lists them.
SPEC_PG_VALUE_CASES = [
    "null",
    "big-int",
    "int8",
    "int8-array",
    "big-serial",
    "serial8",
    "bool",
    "boolean",
    "bool-array",
    "double",
    "float8",
    "float8-array",
    "real",
    "float4",
    "float4-array",
    "integer",
    "int",
    "int4",
    "int4-array",
    "numeric",
    "decimal",
    "numeric-array",
    "serial",
    "serial4",
    "small-int",
    "int2",
    "int2-array",
    "int2-vector",
    "int2-vector-array",
    "small-serial",
    "serial2",
    "bit",
    "bit-array",
    "bit-varying",
    "varbit",
    "varbit-array",
    "bytea",
    "bytea-array",
    "char",
    "char-array",
    "varchar",
    "varchar-array",
    "cidr",
    "cidr-array",
    "inet",
    "inet-array",
    "macaddr",
    "macaddr-array",
    "macaddr8",
    "macaddr8-array",
    "box",
    "box-array",
    "circle",
    "circle-array",
    "line",
    "line-array",
    "lseg",
    "lseg-array",
    "path",
    "path-array",
    "point",
    "point-array",
    "polygon",
    "polygon-array",
    "date",
    "date-array",
    "interval",
    "interval-array",
    "time",
    "time-array",
    "time-tz",
    "time-tz-array",
    "timestamp",
    "timestamp-array",
    "timestamp-tz",
    "timestamp-tz-array",
    "json",
    "json-array",
    "jsonb",
    "jsonb-array",
    "money",
    "money-array",
    "pg-lsn",
    "pg-lsn-array",
    "pg-snapshot",
    "txid-snapshot",
    "name",
    "name-array",
    "text",
    "text-array",
    "xml",
    "xml-array",
    "ts-query",
    "ts-vector",
    "uuid",
    "uuid-array",
    "hstore",
]


def test_stored_resolution_matches_wit_directory() -> None:
    # Fails when wit/ was edited without `make wit`: the codec would speak a stale model.
    assert render(load_resolved_json()) == render(resolve_wit())


def test_model_from_fresh_resolution_has_the_same_shapes() -> None:
    fresh = package_from_resolved(resolve_wit())
    stored = postgres_package()
    for name, interface in stored.interfaces.items():
        assert set(fresh.interfaces[name].functions) == set(interface.functions)


def test_pg_value_cases_follow_the_spec() -> None:
    pg_value = postgres_package().type("types", "pg-value")
    assert isinstance(pg_value, VariantType)
    assert [name for name, _ in pg_value.cases] == SPEC_PG_VALUE_CASES
    assert len(pg_value.cases) == 97
    cases = dict(pg_value.cases)
    assert cases["null"] is None
    hashable_f64 = cases["float8"]
    assert isinstance(hashable_f64, TupleType)
    assert [e.name for e in hashable_f64.elements if isinstance(e, Primitive)] == [
        "u64",
        "s16",
        "s8",
    ]


def test_error_variants_and_records_follow_the_spec() -> None:
    package = postgres_package()
    query_error = package.type("types", "query-error")
    assert isinstance(query_error, VariantType)
    assert [n for n, _ in query_error.cases] == ["invalid-params", "invalid-query", "unexpected"]
    exec_error = package.type("types", "prepared-statement-exec-error")
    assert isinstance(exec_error, VariantType)
    assert [n for n, _ in exec_error.cases] == [
        "unknown-prepared-query",
        "query-error",
        "unexpected",
    ]
    assert dict(exec_error.cases)["query-error"] is query_error
    time_tz = package.type("types", "time-tz")
    assert isinstance(time_tz, RecordType)
    assert [n for n, _ in time_tz.fields] == ["timesonze", "time"]
    weight = package.type("types", "lexeme-weight")
    assert isinstance(weight, EnumType) and weight.names == ("A", "B", "C", "D")
    lexeme = package.type("types", "lexeme")
    assert isinstance(lexeme, RecordType)
    assert isinstance(dict(lexeme.fields)["position"], OptionType)


def test_functions_and_worlds() -> None:
    package = postgres_package()
    assert package.name == "wasmcloud:postgres" and package.version == "0.1.1-draft"
    query = package.function("query", "query")
    assert query.instance == "wasmcloud:postgres/query@0.1.1-draft"
    assert [n for n, _ in query.params] == ["query", "params"]
    (query_result,) = query.results
    assert isinstance(query_result, ResultType)
    batch = package.function("query", "query-batch")
    (batch_result,) = batch.results
    assert isinstance(batch_result, ResultType) and batch_result.ok is None
    exec_ = package.function("prepared", "exec")
    assert [n for n, _ in exec_.params] == ["stmt-token", "params"]
    (exec_result,) = exec_.results
    assert isinstance(exec_result, ResultType)
    assert isinstance(exec_result.ok, Primitive) and exec_result.ok.name == "u64"
    assert set(package.interfaces["prepared"].functions) == {"prepare", "exec"}
    assert set(package.worlds["provider"].exports) == {
        "wasmcloud:postgres/query@0.1.1-draft",
        "wasmcloud:postgres/prepared@0.1.1-draft",
        "wasmcloud:postgres/transactions@0.1.1-draft",
    }
    assert "wasmcloud:postgres/query@0.1.1-draft" in package.worlds["guest"].imports


def test_the_transactions_interface_is_the_spec_s() -> None:
    """../shared/spec/transactions.md: names, order and cases are part of the wire."""
    package = postgres_package()
    interface = package.interfaces["transactions"]
    # (functions travel by name in the subject; wasm-tools lists them sorted)
    assert set(interface.functions) == {"begin", "query", "exec", "commit", "rollback"}
    begin = package.function("transactions", "begin")
    (options,) = begin.param_types
    assert isinstance(options, RecordType) and [n for n, _ in options.fields] == [
        "isolation",
        "read-only",
    ]
    isolation = dict(options.fields)["isolation"]
    assert isinstance(isolation, EnumType)
    assert isolation.names == ("read-committed", "repeatable-read", "serializable")
    (result,) = begin.results
    assert isinstance(result, ResultType) and isinstance(result.err, VariantType)
    assert [name for name, _ in result.err.cases] == [
        "unknown-transaction",
        "timed-out",
        "too-many-transactions",
        "query-error",
        "serialization-failure",
        "commit-outcome-unknown",
        "unexpected",
    ]
    assert [n for n, _ in package.function("transactions", "query").params] == [
        "tx",
        "query",
        "params",
    ]
    assert [n for n, _ in package.function("transactions", "exec").params] == [
        "tx",
        "stmt-token",
        "params",
    ]
    for name in ("commit", "rollback"):
        (ended,) = package.function("transactions", name).results
        assert isinstance(ended, ResultType) and ended.ok is None
