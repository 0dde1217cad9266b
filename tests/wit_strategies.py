"""Hypothesis strategies for any WIT type of the model, derived from the type itself."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from provider.wit.model import (
    EnumType,
    FlagsType,
    ListType,
    OptionType,
    Primitive,
    RecordType,
    ResultType,
    TupleType,
    VariantType,
    WitType,
)
from provider.wit.values import Case, Err, Ok

_INTEGER_BOUNDS = {
    "u8": (0, 2**8 - 1),
    "s8": (-(2**7), 2**7 - 1),
    "u16": (0, 2**16 - 1),
    "s16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "s32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**64 - 1),
    "s64": (-(2**63), 2**63 - 1),
}


def values_of(t: WitType) -> st.SearchStrategy[Any]:
    if isinstance(t, Primitive):
        if t.name in _INTEGER_BOUNDS:
            low, high = _INTEGER_BOUNDS[t.name]
            return st.integers(low, high)
        if t.name == "bool":
            return st.booleans()
        if t.name == "f64":
            return st.floats(allow_nan=False)
        if t.name == "f32":
            return st.floats(width=32, allow_nan=False)
        if t.name == "char":
            return st.characters(exclude_categories=["Cs"])
        return st.text(max_size=20)
    if isinstance(t, ListType):
        if isinstance(t.element, Primitive) and t.element.name == "u8":
            return st.binary(max_size=24)
        return st.lists(values_of(t.element), max_size=4)
    if isinstance(t, TupleType):
        return st.tuples(*(values_of(e) for e in t.elements))
    if isinstance(t, RecordType):
        return st.fixed_dictionaries({name: values_of(ft) for name, ft in t.fields})
    if isinstance(t, VariantType):
        return st.one_of(*(case_values(name, ct) for name, ct in t.cases))
    if isinstance(t, EnumType):
        return st.sampled_from(t.names)
    if isinstance(t, FlagsType):
        return st.frozensets(st.sampled_from(t.names))
    if isinstance(t, OptionType):
        return st.none() | values_of(t.payload)
    if isinstance(t, ResultType):
        ok = st.just(Ok()) if t.ok is None else values_of(t.ok).map(Ok)
        err = st.just(Err()) if t.err is None else values_of(t.err).map(Err)
        return ok | err
    raise TypeError(t)


def case_values(name: str, payload: WitType | None) -> st.SearchStrategy[Case]:
    if payload is None:
        return st.just(Case(name))
    return values_of(payload).map(lambda value: Case(name, value))
