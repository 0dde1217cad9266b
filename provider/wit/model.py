"""The WIT type model, derived from the package in `wit/`.

`wit/` is the single source of truth. `wasm-tools component wit --json wit/` (a maintained
parser) resolves it to JSON; `make wit` stores that output next to this module as
`wit_resolved.json`, and `tests/unit/test_wit_model.py` fails if the stored copy and `wit/` ever
disagree. Nothing here retypes a WIT name or shape by hand: it is all read from that JSON.

Type aliases (`type radius = hashable-f64;`) are resolved away: the model keeps only the shapes
that the value encoding needs, plus the names of records, variants and enums for messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

PRIMITIVES = frozenset(
    {
        "bool", "u8", "s8", "u16", "s16", "u32", "s32", "u64", "s64",
        "f32", "f64", "char", "string",
    }
)  # fmt: skip


# Identity equality (eq=False): types are compared and cached by object identity, which keeps
# hashing cheap for the 97-case pg-value variant.
@dataclass(frozen=True, eq=False)
class Primitive:
    name: str


@dataclass(frozen=True, eq=False)
class ListType:
    element: WitType


@dataclass(frozen=True, eq=False)
class TupleType:
    elements: tuple[WitType, ...]


@dataclass(frozen=True, eq=False)
class RecordType:
    name: str
    fields: tuple[tuple[str, WitType], ...]


@dataclass(frozen=True, eq=False)
class VariantType:
    name: str
    cases: tuple[tuple[str, WitType | None], ...]


@dataclass(frozen=True, eq=False)
class EnumType:
    name: str
    names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class FlagsType:
    name: str
    names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class OptionType:
    payload: WitType


@dataclass(frozen=True, eq=False)
class ResultType:
    ok: WitType | None
    err: WitType | None


WitType = (
    Primitive | ListType | TupleType | RecordType | VariantType | EnumType | FlagsType
    | OptionType | ResultType
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Function:
    """One WIT function as it travels over wRPC: parameters in, results out."""

    instance: str  # e.g. "wasmcloud:postgres/query@0.1.1-draft"
    name: str  # kebab-case, e.g. "query-batch"
    params: tuple[tuple[str, WitType], ...]
    results: tuple[WitType, ...]

    @property
    def param_types(self) -> tuple[WitType, ...]:
        return tuple(param_type for _, param_type in self.params)


@dataclass(frozen=True, eq=False)
class Interface:
    name: str
    instance: str  # the fully qualified name an importer uses
    types: dict[str, WitType] = field(repr=False)
    functions: dict[str, Function]


@dataclass(frozen=True, eq=False)
class World:
    name: str
    imports: tuple[str, ...]  # instance names
    exports: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Package:
    name: str  # "wasmcloud:postgres"
    version: str | None
    interfaces: dict[str, Interface]
    worlds: dict[str, World]

    def function(self, interface: str, name: str) -> Function:
        return self.interfaces[interface].functions[name]

    def type(self, interface: str, name: str) -> WitType:
        return self.interfaces[interface].types[name]


class _Resolver:
    """Turns wasm-tools' indexed type table into model objects, resolving aliases."""

    def __init__(self, resolved: dict[str, Any]) -> None:
        self._table: list[dict[str, Any]] = resolved["types"]
        self._built: dict[int, WitType] = {}

    def ref(self, ref: str | int | None) -> WitType | None:
        if ref is None:
            return None
        return self.require(ref)

    def require(self, ref: str | int) -> WitType:
        if isinstance(ref, str):
            if ref not in PRIMITIVES:
                raise ValueError(f"unsupported WIT primitive {ref!r}")
            return Primitive(ref)
        built = self._built.get(ref)
        if built is None:
            built = self._build(self._table[ref])
            self._built[ref] = built
        return built

    def _build(self, entry: dict[str, Any]) -> WitType:
        name = entry.get("name") or ""
        ((kind, shape),) = entry["kind"].items()
        if kind == "type":
            return self.require(shape)
        if kind == "list":
            return ListType(self.require(shape))
        if kind == "option":
            payload = self.require(shape)
            if isinstance(payload, OptionType):
                # None would be ambiguous between the outer and the inner option.
                raise ValueError("option<option<...>> is not supported by the Python mapping")
            return OptionType(payload)
        if kind == "tuple":
            return TupleType(tuple(self.require(t) for t in shape["types"]))
        if kind == "record":
            return RecordType(
                name, tuple((f["name"], self.require(f["type"])) for f in shape["fields"])
            )
        if kind == "variant":
            return VariantType(
                name, tuple((c["name"], self.ref(c.get("type"))) for c in shape["cases"])
            )
        if kind == "enum":
            return EnumType(name, tuple(c["name"] for c in shape["cases"]))
        if kind == "flags":
            return FlagsType(name, tuple(f["name"] for f in shape["flags"]))
        if kind == "result":
            return ResultType(self.ref(shape.get("ok")), self.ref(shape.get("err")))
        raise ValueError(f"unsupported WIT type kind {kind!r} ({name or 'anonymous'})")


def package_from_resolved(resolved: dict[str, Any]) -> Package:
    """Build the model from `wasm-tools component wit --json` output (one package)."""
    (package_json,) = resolved["packages"]
    package_name, _, version = package_json["name"].partition("@")
    resolver = _Resolver(resolved)
    suffix = f"@{version}" if version else ""
    interfaces: dict[str, Interface] = {}
    instance_by_index: dict[int, str] = {}
    for index, interface_json in enumerate(resolved["interfaces"]):
        name = interface_json["name"]
        instance = f"{package_name}/{name}{suffix}"
        instance_by_index[index] = instance
        types = {n: resolver.require(ref) for n, ref in interface_json["types"].items()}
        functions = {
            fname: Function(
                instance=instance,
                name=fname,
                params=tuple((p["name"], resolver.require(p["type"])) for p in fjson["params"]),
                results=_function_results(fjson, resolver),
            )
            for fname, fjson in interface_json["functions"].items()
        }
        interfaces[name] = Interface(name, instance, types, functions)
    worlds = {
        world["name"]: World(
            world["name"],
            tuple(_world_items(world["imports"], instance_by_index)),
            tuple(_world_items(world["exports"], instance_by_index)),
        )
        for world in resolved["worlds"]
    }
    return Package(package_name, version or None, interfaces, worlds)


def _function_results(function_json: dict[str, Any], resolver: _Resolver) -> tuple[WitType, ...]:
    # wasm-tools >= 1.220 prints a single optional "result"; older releases printed "results".
    if "result" in function_json:
        result = function_json["result"]
        return () if result is None else (resolver.require(result),)
    return tuple(resolver.require(r["type"]) for r in function_json.get("results", []))


def _world_items(items: dict[str, Any], instance_by_index: dict[int, str]) -> list[str]:
    return [
        instance_by_index[item["interface"]["id"]] for item in items.values() if "interface" in item
    ]


RESOLVED_JSON = "resolved.json"


def load_resolved_json() -> dict[str, Any]:
    """The stored `wasm-tools component wit --json wit/` output shipped with the package."""
    text = resources.files(__package__).joinpath(RESOLVED_JSON).read_text(encoding="utf-8")
    resolved: dict[str, Any] = json.loads(text)
    return resolved


@cache
def postgres_package() -> Package:
    """The `wasmcloud:postgres` package, as resolved from `wit/`."""
    return package_from_resolved(load_resolved_json())
