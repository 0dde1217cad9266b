"""Values between wasmtime-py and the project's codec, converted by type (derived, not typed).

wasmtime-py shows a WIT variant, option or result either *tagged* (`Variant(tag, payload)`) or
*untagged* (the bare payload, the case found by `isinstance` in declaration order), depending
on whether two cases' payloads would map to overlapping Python classes. Records are objects
with kebab-case attributes. The codec (`provider.wit.values`) always uses `Case`, `Ok`/`Err`
and dicts. The converters here are built once per wasmtime type from reflection — using the
same class-overlap rule wasmtime-py applies, through its public `add_classes` — and reused for
every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wasmtime.component import U8 as U8Type
from wasmtime.component import (
    ListType,
    OptionType,
    Record,
    RecordType,
    ResultType,
    TupleType,
    ValType,
    Variant,
    VariantType,
)

from provider.wit.values import Case, Err, Ok

Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _classes(wasm_type: ValType | None) -> set[type]:
    found: set[type] = set()
    if wasm_type is None:
        found.add(object)
    else:
        wasm_type.add_classes(found)
    return found


def is_tagged(cases: list[tuple[str, ValType | None]]) -> bool:
    """wasmtime-py's rule: tagged when two cases' payload classes overlap."""
    seen: set[type] = set()
    for _, wasm_type in cases:
        case = _classes(wasm_type)
        if case & seen:
            return True
        seen |= case
    return False


class ValueConverters:
    """`to_codec(t)` and `to_wasmtime(t)`: converters for a wasmtime type, built once."""

    def to_codec(self, t: ValType) -> Convert:
        if (container := _container(t, self.to_codec)) is not None:
            return container
        if isinstance(t, RecordType):
            fields = [(name, self.to_codec(ft)) for name, ft in t.fields]
            return lambda record: {name: c(getattr(record, name)) for name, c in fields}
        if isinstance(t, VariantType | OptionType | ResultType):
            return self._variant_to_codec(t)
        return _identity  # primitives, enums (a name) and flags (a set) look the same

    def _variant_to_codec(self, t: VariantType | OptionType | ResultType) -> Convert:
        cases = _cases(t)
        converts = {name: (None if ct is None else self.to_codec(ct)) for name, ct in cases}
        make = _maker(t)
        if is_tagged(cases):

            def tagged(value: Any) -> Any:
                convert = converts[value.tag]
                return make(value.tag, None if convert is None else convert(value.payload))

            return tagged
        tests = [(name, None if ct is None else tuple(_classes(ct))) for name, ct in cases]

        def untagged(value: Any) -> Any:
            for name, classes in tests:
                if classes is None:
                    if value is None:
                        return make(name, None)
                elif isinstance(value, classes):
                    convert = converts[name]
                    return make(name, None if convert is None else convert(value))
            raise ValueError(f"{value!r:.80} matches no case")

        return untagged

    def to_wasmtime(self, t: ValType) -> Convert:
        if (container := _container(t, self.to_wasmtime)) is not None:
            return container
        if isinstance(t, RecordType):
            fields = [(name, self.to_wasmtime(ft)) for name, ft in t.fields]

            def record(value: dict[str, Any]) -> Record:
                made = Record()
                for name, convert in fields:
                    setattr(made, name, convert(value[name]))
                return made

            return record
        if isinstance(t, VariantType | OptionType | ResultType):
            cases = _cases(t)
            by_tag = {name: (None if ct is None else self.to_wasmtime(ct)) for name, ct in cases}
            tag_of = _tag_of(t)
            tagged = is_tagged(cases)

            def variant(value: Any) -> Any:
                tag, payload = tag_of(value)
                convert = by_tag[tag]
                converted = None if convert is None else convert(payload)
                return Variant(tag, converted) if tagged else converted

            return variant
        return _identity


def _container(t: ValType, element_converter: Callable[[ValType], Convert]) -> Convert | None:
    """Lists and tuples convert element-wise, the same way in both directions."""
    if isinstance(t, ListType):
        if isinstance(t.element, U8Type):
            return bytes
        convert = element_converter(t.element)
        return lambda items: [convert(item) for item in items]
    if isinstance(t, TupleType):
        converts = [element_converter(e) for e in t.elements]
        return lambda items: tuple(c(v) for c, v in zip(converts, items, strict=True))
    return None


def _cases(t: VariantType | OptionType | ResultType) -> list[tuple[str, ValType | None]]:
    if isinstance(t, VariantType):
        return list(t.cases)
    if isinstance(t, OptionType):
        return [("none", None), ("some", t.payload)]
    return [("ok", t.ok), ("err", t.err)]


def _maker(t: VariantType | OptionType | ResultType) -> Callable[[str, Any], Any]:
    if isinstance(t, VariantType):
        return lambda tag, payload: Case(tag, payload)
    if isinstance(t, OptionType):
        return lambda tag, payload: payload
    return lambda tag, payload: Ok(payload) if tag == "ok" else Err(payload)


def _tag_of(t: VariantType | OptionType | ResultType) -> Callable[[Any], tuple[str, Any]]:
    if isinstance(t, VariantType):
        return lambda value: (value.tag, value.value)
    if isinstance(t, OptionType):
        return lambda value: ("none", None) if value is None else ("some", value)
    return lambda value: ("ok", value.value) if isinstance(value, Ok) else ("err", value.value)
