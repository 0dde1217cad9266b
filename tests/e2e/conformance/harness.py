"""Run conformance cases through the example component, on our stack and on wash 2.10."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from host_shim.component_host import ComponentError, ComponentHost
from provider.wit.values import Case
from tests.e2e.conformance.cases import ConformanceCase
from tests.e2e.conformance.guest_json import error_from_guest, params_to_guest, rows_from_guest
from tests.e2e.conformance.wash_faults import WASH_FAULTS


@dataclass(frozen=True)
class Outcome:
    kind: str  # "rows", "affected", "ok", "error", "crash", "hang"
    value: Any = None

    def describe(self) -> str:
        return f"{self.kind}: {self.value!r:.300}" if self.value is not None else self.kind


def kebab(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", camel).lower()


def request_for(case: ConformanceCase) -> str:
    request: dict[str, Any] = {"mode": case.mode, "sql": case.sql,
                               "params": params_to_guest(list(case.params))}  # fmt: skip
    if "token" in case.extra:
        request["token"] = case.extra["token"]
    return json.dumps(request)


def setup_request(case: ConformanceCase) -> str | None:
    return json.dumps({"mode": "batch", "sql": case.setup}) if case.setup else None


def outcome_from(text: str, case: ConformanceCase) -> Outcome:
    answer = json.loads(text)
    if "err" in answer:
        variants = error_from_guest(answer["err"])
        names = tuple(kebab(v) for v in variants if not _is_message(v, variants))
        return Outcome("error", names)
    result = answer["ok"]
    if case.mode == "query":
        return Outcome("rows", [[value for _, value in row] for row in rows_from_guest(result)])
    if case.mode == "exec":
        return Outcome("affected", result)
    return Outcome("ok")


def _is_message(value: Any, variants: tuple[Any, ...]) -> bool:
    return (
        value is variants[-1]
        and len(variants) > 1
        and not re.fullmatch(r"[A-Z][A-Za-z]*", str(value))
    )


def expected(case: ConformanceCase) -> Outcome:
    if case.error is not None:
        return Outcome("error", case.error)
    if case.rows is not None:
        return Outcome("rows", case.rows)
    if case.affected is not None:
        return Outcome("affected", case.affected)
    return Outcome("ok")


def error_message(text: str) -> str | None:
    answer = json.loads(text)
    if "err" not in answer:
        return None
    variants = error_from_guest(answer["err"])
    return str(variants[-1]) if len(variants) > 1 else None


# --- our stack ----------------------------------------------------------------------------------


async def run_ours(host: ComponentHost, case: ConformanceCase) -> tuple[Outcome, str]:
    try:
        if (setup := setup_request(case)) is not None:
            await asyncio.to_thread(host.call_export, "conform", setup)
        text = await asyncio.to_thread(host.call_export, "conform", request_for(case))
    except ComponentError as exc:
        return Outcome("crash", str(exc)), ""
    return outcome_from(text, case), text


def post(url: str, body: str, timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/conform", data=body.encode(), method="POST",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def run_wash(url: str, case: ConformanceCase, timeout: float = 15.0) -> tuple[Outcome, str]:
    try:
        if (setup := setup_request(case)) is not None:
            post(url, setup, timeout)
        status, text = post(url, request_for(case), timeout)
    except (TimeoutError, urllib.error.URLError) as exc:
        if "timed out" in str(exc):
            return Outcome("hang", f"no answer within {timeout:g} s"), ""
        return Outcome("crash", str(exc)), ""
    if status != 200:
        return Outcome("crash", f"HTTP {status}: {text[:200]}"), text
    try:
        return outcome_from(text, case), text
    except (ValueError, KeyError) as exc:
        return Outcome("crash", f"unreadable answer ({exc}): {text[:200]}"), text


# --- comparing ------------------------------------------------------------------------------------

EQUAL = "equal"
OURS_ONLY = "ours-only-correct"
DELIBERATE = "deliberate difference"
UNEXPLAINED = "UNEXPLAINED"


def _unordered_maps(value: Any) -> Any:
    """hstore is a map: wash lists its pairs in hash-map order, we in PostgreSQL's."""
    if isinstance(value, Case) and value.tag == "hstore":
        return Case("hstore", sorted(value.value, key=repr))
    if isinstance(value, list):
        return [_unordered_maps(item) for item in value]
    return value


def classify(case: ConformanceCase, ours: Outcome, theirs: Outcome) -> tuple[str, str]:
    """File one difference by the ledger; anything the ledger does not explain is UNEXPLAINED."""
    fault = WASH_FAULTS.get(case.id)
    if ours == theirs or (
        ours.kind == theirs.kind == "rows"
        and _unordered_maps(ours.value) == _unordered_maps(theirs.value)
    ):
        if fault is not None:
            return UNEXPLAINED, f"listed in WASH_FAULTS ({fault[0]}) but wash now answers as we do"
        return EQUAL, ""
    if fault is None and case.deliberate:
        return DELIBERATE, case.deliberate
    if fault is None:
        return UNEXPLAINED, "a difference WASH_FAULTS does not list: read it, list it or fix us"
    kind, why = fault
    if _family(theirs.kind) != _family(kind):
        return UNEXPLAINED, f"WASH_FAULTS says wash gives {kind} here, it gave {theirs.kind}"
    return OURS_ONLY, f"wash {theirs.kind}: {why}"


def _family(kind: str) -> str:
    """How wash fails a case varies from run to run (a crash in one, `invalid-query` or no
    answer in the next: seen for the path and polygon arrays); that it fails does not. Wrong
    rows are their own family: a value wash gets wrong differently would be a new fault."""
    return "fails" if kind in ("crash", "hang", "error") else kind
