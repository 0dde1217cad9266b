"""Our codec values ⇄ the example guest's self-describing JSON (see components/example/app.py).

Written from the WIT types, so class names follow componentize-py's naming: a type or case
`int8-array` is `Int8Array`, a variant case class is `PgValue_Int8Array`, record fields are
snake_case.
"""

from __future__ import annotations

from typing import Any

from provider.wit import model as wit
from provider.wit.values import Case

PG_VALUE = wit.postgres_package().type("types", "pg-value")


def camel(kebab: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in kebab.split("-"))


def snake(kebab: str) -> str:
    return kebab.replace("-", "_")


def to_guest(value: Any, t: wit.WitType) -> Any:
    if isinstance(t, wit.Primitive):
        return value
    if isinstance(t, wit.ListType):
        if isinstance(t.element, wit.Primitive) and t.element.name == "u8":
            return {"b": bytes(value).hex()}
        return [to_guest(item, t.element) for item in value]
    if isinstance(t, wit.TupleType):
        return {"t": [to_guest(v, et) for v, et in zip(value, t.elements, strict=True)]}
    if isinstance(t, wit.RecordType):
        return {
            "r": camel(t.name),
            "f": {snake(name): to_guest(value[name], ft) for name, ft in t.fields},
        }
    if isinstance(t, wit.VariantType):
        payload_type = dict(t.cases)[value.tag]
        tag = f"{camel(t.name)}_{camel(value.tag)}"
        if payload_type is None:
            return {"v": tag}
        return {"v": tag, "value": to_guest(value.value, payload_type)}
    if isinstance(t, wit.EnumType):
        return {"e": camel(t.name), "n": value}
    if isinstance(t, wit.OptionType):
        return None if value is None else to_guest(value, t.payload)
    raise TypeError(f"no guest JSON for {t!r}")


def from_guest(value: Any, t: wit.WitType) -> Any:
    if isinstance(t, wit.Primitive):
        return value
    if isinstance(t, wit.ListType):
        if isinstance(t.element, wit.Primitive) and t.element.name == "u8":
            return bytes.fromhex(value["b"])
        return [from_guest(item, t.element) for item in value]
    if isinstance(t, wit.TupleType):
        return tuple(from_guest(v, et) for v, et in zip(value["t"], t.elements, strict=True))
    if isinstance(t, wit.RecordType):
        return {name: from_guest(value["f"][snake(name)], ft) for name, ft in t.fields}
    if isinstance(t, wit.VariantType):
        wanted = value["v"].split("_", 1)[1]
        for name, payload_type in t.cases:
            if camel(name) == wanted:
                if payload_type is None:
                    return Case(name)
                return Case(name, from_guest(value["value"], payload_type))
        raise ValueError(f"{t.name} has no case {wanted}")
    if isinstance(t, wit.EnumType):
        return value["n"]
    if isinstance(t, wit.OptionType):
        return None if value is None else from_guest(value, t.payload)
    raise TypeError(f"no guest JSON for {t!r}")


def params_to_guest(params: list[Case]) -> list[Any]:
    return [to_guest(p, PG_VALUE) for p in params]


def rows_from_guest(rows: list[list[Any]]) -> list[list[tuple[str, Case]]]:
    return [[(name, from_guest(value, PG_VALUE)) for name, value in row] for row in rows]


def error_from_guest(value: Any) -> tuple[str, ...]:
    """An error variant as (variant, [inner variant,] message)."""
    tag = value["v"].split("_", 1)[1]
    payload = value.get("value")
    if isinstance(payload, dict):  # exec's query-error(query-error)
        return (tag, *error_from_guest(payload))
    return (tag, payload) if payload is not None else (tag,)
