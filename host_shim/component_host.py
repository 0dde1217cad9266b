"""Run a Wasm component with wasmtime-py and serve its `wasmcloud:postgres` imports over wRPC.

Compiling a component takes seconds; the compiled form is cached as `.cwasm` next to the
`.wasm`, keyed by the component's hash and the wasmtime version (loading it takes
milliseconds). The component's imports are checked against `wit/` by reflection before
anything runs. Each import call is converted (`wasm_values`), sent with the host's headers
(`source-id`, `link-name`) through the project's wRPC client on the asyncio loop, and its
result converted back; the component itself runs in a worker thread so that loop stays free.
Every invocation gets a fresh Store: one trap poisons a Store for good.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import (
    F32,
    F64,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    Char,
    Component,
    ComponentInstanceType,
    EnumType,
    FlagsType,
    FuncType,
    Linker,
    ListType,
    OptionType,
    RecordType,
    ResultType,
    String,
    TupleType,
    ValType,
    VariantType,
)

from host_shim import wasmtime_reflection_cache
from host_shim.wasm_values import ValueConverters
from provider.wit import model as wit
from provider.wrpc.client import WrpcClient

_PRIMITIVE_NAMES: dict[type, str] = {
    Bool: "bool", S8: "s8", S16: "s16", S32: "s32", S64: "s64", U8: "u8", U16: "u16",
    U32: "u32", U64: "u64", F32: "f32", F64: "f64", Char: "char", String: "string",
}  # fmt: skip


class ComponentError(Exception):
    """The component cannot run here: a bad import, a trap, a provider that did not answer."""


def load_component(engine: Engine, wasm_path: Path) -> tuple[Component, float, bool]:
    """(component, seconds, from cache): compiled once, then loaded from the .cwasm cache."""
    started = time.perf_counter()
    digest = hashlib.sha256(wasm_path.read_bytes()).hexdigest()[:16]
    cached = wasm_path.with_name(f"{wasm_path.stem}-{digest}-wasmtime{version('wasmtime')}.cwasm")
    if cached.exists():
        try:
            component = Component.deserialize_file(engine, str(cached))
            return component, time.perf_counter() - started, True
        except wasmtime.WasmtimeError:
            cached.unlink()  # from another build of wasmtime: compile again
    component = Component.from_file(engine, str(wasm_path))
    for stale in wasm_path.parent.glob(f"{wasm_path.stem}-*.cwasm"):
        stale.unlink()
    cached.write_bytes(component.serialize())
    return component, time.perf_counter() - started, False


def type_mismatch(wasm: ValType, model: wit.WitType) -> str | None:
    """Why a component's type differs from `wit/`'s, or None when they are the same."""
    if isinstance(model, wit.Primitive):
        name = _PRIMITIVE_NAMES.get(type(wasm))
        return None if name == model.name else f"{name or type(wasm).__name__} != {model.name}"
    if isinstance(model, wit.ListType):
        return _nested(wasm, ListType, lambda w: type_mismatch(w.element, model.element))
    if isinstance(model, wit.TupleType):
        return _nested(wasm, TupleType, lambda w: _all(w.elements, model.elements))
    if isinstance(model, wit.RecordType):
        return _nested(wasm, RecordType, lambda w: _named(w.fields, model.fields, model.name))
    if isinstance(model, wit.VariantType):
        return _nested(wasm, VariantType, lambda w: _named(w.cases, model.cases, model.name))
    if isinstance(model, wit.EnumType):
        return _nested(
            wasm, EnumType, lambda w: None if tuple(w.names) == model.names else model.name
        )
    if isinstance(model, wit.FlagsType):
        return _nested(
            wasm, FlagsType, lambda w: None if tuple(w.names) == model.names else model.name
        )
    if isinstance(model, wit.OptionType):
        return _nested(wasm, OptionType, lambda w: type_mismatch(w.payload, model.payload))
    if isinstance(model, wit.ResultType):
        return _nested(
            wasm,
            ResultType,
            lambda w: _optional(w.ok, model.ok) or _optional(w.err, model.err),
        )
    return f"unsupported type {model!r}"


def _nested(wasm: ValType, kind: type, check: Callable[[Any], str | None]) -> str | None:
    if not isinstance(wasm, kind):
        return f"{type(wasm).__name__} where WIT has a {kind.__name__}"
    return check(wasm)


def _all(wasm_types: list[ValType], models: tuple[wit.WitType, ...]) -> str | None:
    if len(wasm_types) != len(models):
        return f"{len(wasm_types)} elements != {len(models)}"
    for wasm, model in zip(wasm_types, models, strict=True):
        if problem := type_mismatch(wasm, model):
            return problem
    return None


def _optional(wasm: ValType | None, model: wit.WitType | None) -> str | None:
    if wasm is None or model is None:
        return None if wasm is None and model is None else "payload presence differs"
    return type_mismatch(wasm, model)


def _named(
    wasm: list[tuple[str, ValType | None]],
    model: tuple[tuple[str, wit.WitType | None], ...],
    owner: str,
) -> str | None:
    if [n for n, _ in wasm] != [n for n, _ in model]:
        return f"{owner}: names or order differ"
    for (name, w), (_, m) in zip(wasm, model, strict=True):
        if problem := _optional(w, m):
            return f"{owner}.{name}: {problem}"
    return None


@dataclass
class ImportCall:
    """A host function for one imported WIT function."""

    function: wit.Function
    func_type: FuncType
    converters: ValueConverters = field(default_factory=ValueConverters)

    def __post_init__(self) -> None:
        self.params_to_codec = [self.converters.to_codec(t) for _, t in self.func_type.params]
        result = self.func_type.result
        self.result_to_wasmtime = (
            self.converters.to_wasmtime(result) if result is not None else (lambda value: None)
        )


class ComponentHost:
    """Loads one component and runs its exports, its postgres imports served over wRPC."""

    def __init__(
        self,
        wasm_path: Path,
        client: WrpcClient,
        headers: Mapping[str, str],
        loop: asyncio.AbstractEventLoop,
        call_timeout: float = 600.0,
    ) -> None:
        wasmtime_reflection_cache.install()
        self.engine = Engine()
        self.component, self.load_seconds, self.from_cache = load_component(self.engine, wasm_path)
        self.client = client
        self.headers = dict(headers)
        self.loop = loop
        self.call_timeout = call_timeout
        self.import_calls = 0
        self.import_seconds = 0.0
        self.linker = self._link()

    def imported_functions(self) -> dict[str, tuple[wit.Function, FuncType]]:
        """The component's `wasmcloud:postgres` imports, checked against `wit/`."""
        package = wit.postgres_package()
        by_instance = {i.instance: i for i in package.interfaces.values()}
        found: dict[str, tuple[wit.Function, FuncType]] = {}
        for name, extern in self.component.type.imports(self.engine).items():
            if not name.startswith(f"{package.name}/"):
                continue
            interface = by_instance.get(name)
            if interface is None:
                raise ComponentError(f"the component imports {name}, which wit/ does not define")
            instance_type = extern.ty
            assert isinstance(instance_type, ComponentInstanceType)
            for fname, fextern in instance_type.exports(self.engine).items():
                func_type = fextern.ty
                if not isinstance(func_type, FuncType):
                    continue  # a type export
                model = interface.functions.get(fname)
                if model is None:
                    raise ComponentError(f"{name}.{fname} is not in wit/")
                params = list(func_type.params)
                problem = _all([t for _, t in params], model.param_types) or (
                    None if [n for n, _ in params] == [n for n, _ in model.params] else "names"
                )
                results = [func_type.result] if func_type.result is not None else []
                problem = problem or _all(results, model.results)
                if problem:
                    raise ComponentError(f"{name}.{fname} differs from wit/: {problem}")
                found[f"{name}#{fname}"] = (model, func_type)
        return found

    def _link(self) -> Linker:
        linker = Linker(self.engine)
        linker.add_wasip2()
        linker.add_wasi_http()
        by_instance: dict[str, list[tuple[wit.Function, FuncType]]] = {}
        for model, func_type in self.imported_functions().values():
            by_instance.setdefault(model.instance, []).append((model, func_type))
        with linker.root() as root:
            for instance, functions in by_instance.items():
                with root.add_instance(instance) as linker_instance:
                    for model, func_type in functions:
                        linker_instance.add_func(model.name, self._host_function(model, func_type))
        return linker

    def _host_function(self, model: wit.Function, func_type: FuncType) -> Callable[..., Any]:
        call = ImportCall(model, func_type)

        def host_function(_store: Any, *params: Any) -> Any:
            started = time.perf_counter()
            args = [convert(p) for convert, p in zip(call.params_to_codec, params, strict=True)]
            pending = asyncio.run_coroutine_threadsafe(
                self.client.call(model, args, self.headers), self.loop
            )
            try:
                (result,) = pending.result(self.call_timeout)
            except Exception as exc:
                raise ComponentError(
                    f"{model.instance}.{model.name}: the provider did not answer: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            converted = call.result_to_wasmtime(result)
            self.import_calls += 1
            self.import_seconds += time.perf_counter() - started
            return converted

        return host_function

    def call_export(self, name: str, *args: Any) -> Any:
        """Call an exported function in a fresh Store (blocking: run it in a worker thread)."""
        store = Store(self.engine)
        wasi = WasiConfig()
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        store.set_wasi(wasi)
        store.set_wasi_http()
        try:
            instance = self.linker.instantiate(store, self.component)
            func = instance.get_func(store, name)
            if func is None:
                raise ComponentError(f"the component exports no function {name!r}")
            result = func(store, *args)
            func.post_return(store)
            return result
        except ComponentError:
            raise
        except wasmtime.WasmtimeError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ComponentError):
                raise cause from None
            raise ComponentError(f"the component trapped: {_first_line(exc)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
