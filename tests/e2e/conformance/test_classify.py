"""The differential comparison can fail: only the ledger's differences pass, exactly as listed."""

from __future__ import annotations

from tests.e2e.conformance import harness
from tests.e2e.conformance.cases import all_cases
from tests.e2e.conformance.wash_faults import WASH_FAULTS

CASES = {case.id: case for case in all_cases()}


def test_every_ledger_entry_names_a_real_case_and_kind() -> None:
    assert set(WASH_FAULTS) <= set(CASES)
    assert {kind for kind, _ in WASH_FAULTS.values()} <= {"crash", "hang", "error", "rows"}


def test_an_unlisted_difference_is_unexplained() -> None:
    case = CASES["param-big-int-0"]
    assert "param-big-int-0" not in WASH_FAULTS and case.deliberate is None
    ours = harness.Outcome("rows", [[1]])
    verdict, reason = harness.classify(case, ours, harness.Outcome("rows", [[2]]))
    assert verdict == harness.UNEXPLAINED and "does not list" in reason
    assert harness.classify(case, ours, ours) == (harness.EQUAL, "")


def test_a_listed_fault_passes_only_as_listed() -> None:
    case = CASES["column-numeric-nan"]
    assert WASH_FAULTS["column-numeric-nan"][0] == "crash"
    ours = harness.Outcome("rows", [["NaN"]])
    verdict, _ = harness.classify(case, ours, harness.Outcome("crash", "HTTP 500"))
    assert verdict == harness.OURS_ONLY
    # How wash fails varies from run to run; that it fails, or what rows it gets wrong, not.
    verdict, _ = harness.classify(case, ours, harness.Outcome("error", ("invalid-query",)))
    assert verdict == harness.OURS_ONLY
    verdict, reason = harness.classify(case, ours, harness.Outcome("rows", [["0"]]))
    assert verdict == harness.UNEXPLAINED and "gives crash here, it gave rows" in reason
    verdict, reason = harness.classify(case, ours, ours)  # wash fixed: the ledger is stale
    assert verdict == harness.UNEXPLAINED and "now answers as we do" in reason
