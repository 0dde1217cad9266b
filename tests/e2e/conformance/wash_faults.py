"""Where wash 2.10.3's own provider answers wrongly, case by case: the differential test's ledger.

Each entry is a case where wash's answer differs from the table (the WIT contract, and what we
answer), with the kind of wrong answer wash gives and why it is wrong, read from the side-by-side
report. A listed difference is expected. A difference not listed, or a listed case where wash
now answers another way or correctly, fails the test: a new divergence is read before it is
filed. Deliberate differences (where the spec leaves room) are on the cases themselves
(`ConformanceCase.deliberate`).
"""

from __future__ import annotations

# case id -> (what wash answered when listed: "crash", "hang", "error" or "rows"; why that is
# wrong). Crash, hang and error are one family when compared: which of them wash gives for a
# value it cannot handle varies from run to run.
WASH_FAULTS: dict[str, tuple[str, str]] = {
    "param-float8-9": ("rows", "NaN comes back as +infinity"),
    "param-float8-11": ("rows", "the smallest denormal (5e-324) comes back as 0"),
    "param-float4-15": ("rows", "NaN comes back as +infinity"),
    "param-numeric-23": ("crash", "the provider fails decoding or encoding this value"),
    "param-numeric-24": ("error", "a valid value refused as invalid-query"),
    "param-numeric-25": ("crash", "the provider fails decoding or encoding this value"),
    "param-decimal-26": ("crash", "the provider fails decoding or encoding this value"),
    "param-numeric-array-27": ("crash", "the provider fails decoding or encoding this value"),
    "param-bit-37": ("error", "a valid value refused as invalid-query"),
    "param-bit-array-38": ("error", "a valid value refused as invalid-query"),
    "param-bit-varying-39": ("error", "a valid value refused as invalid-query"),
    "param-varbit-40": ("error", "a valid value refused as invalid-query"),
    "param-varbit-array-41": ("error", "a valid value refused as invalid-query"),
    "param-char-44": ("crash", "the provider fails decoding or encoding this value"),
    "param-char-array-45": ("crash", "the provider fails decoding or encoding this value"),
    "param-inet-50": ("error", "a valid value refused as invalid-query"),
    "param-circle-58": ("error", "a valid value refused as invalid-query"),
    "param-circle-array-59": ("error", "a valid value refused as invalid-query"),
    "param-lseg-62": ("error", "a valid value refused as invalid-query"),
    "param-lseg-array-63": ("error", "a valid value refused as invalid-query"),
    "param-path-64": ("crash", "the provider fails decoding or encoding this value"),
    "param-path-array-65": ("crash", "the provider fails decoding or encoding this value"),
    "param-polygon-68": ("crash", "the provider fails decoding or encoding this value"),
    "param-polygon-array-69": ("crash", "the provider fails decoding or encoding this value"),
    "param-date-73": ("error", "a valid value refused as invalid-query"),
    "param-date-array-74": ("error", "a valid value refused as invalid-query"),
    "param-time-tz-79": ("error", "a valid value refused as invalid-query"),
    "param-time-tz-array-80": ("error", "a valid value refused as invalid-query"),
    "param-json-88": (
        "rows",
        "json text re-serialised: the duplicate key and the spacing PostgreSQL keeps are lost",
    ),
    "param-money-92": ("error", "a valid value refused as invalid-query"),
    "param-money-93": ("error", "a valid value refused as invalid-query"),
    "param-money-array-94": ("error", "a valid value refused as invalid-query"),
    "param-pg-snapshot-97": ("error", "a valid value refused as invalid-query"),
    "param-ts-query-105": ("error", "a valid value refused as invalid-query"),
    "param-ts-vector-106": ("error", "a valid value refused as invalid-query"),
    "column-numeric-scale": ("crash", "the provider fails decoding or encoding this value"),
    "column-numeric-big": ("crash", "the provider fails decoding or encoding this value"),
    "column-numeric-nan": ("crash", "the provider fails decoding or encoding this value"),
    "column-numeric-array": ("crash", "the provider fails decoding or encoding this value"),
    "column-money": ("crash", "the provider fails decoding or encoding this value"),
    "column-bpchar": ("crash", "the provider fails decoding or encoding this value"),
    "column-date-infinity": ("crash", "the provider fails decoding or encoding this value"),
    "column-timestamp-minus-infinity": (
        "crash",
        "the provider fails decoding or encoding this value",
    ),
    "column-timetz": ("crash", "the provider fails decoding or encoding this value"),
    "column-interval-duration": ("crash", "the provider fails decoding or encoding this value"),
    "column-lseg": ("crash", "the provider fails decoding or encoding this value"),
    "column-line": ("crash", "the provider fails decoding or encoding this value"),
    "column-path": ("crash", "the provider fails decoding or encoding this value"),
    "column-polygon": ("crash", "the provider fails decoding or encoding this value"),
    "column-circle": ("crash", "the provider fails decoding or encoding this value"),
    "column-tsvector": ("crash", "the provider fails decoding or encoding this value"),
    "column-tsquery": ("crash", "the provider fails decoding or encoding this value"),
    "column-oid": ("crash", "the provider fails decoding or encoding this value"),
    "column-int4range": ("crash", "the provider fails decoding or encoding this value"),
    "column-record": ("crash", "the provider fails decoding or encoding this value"),
    "column-array-with-null": ("crash", "the provider fails decoding or encoding this value"),
    "column-array-2d": ("crash", "the provider fails decoding or encoding this value"),
    "column-json-duplicate-keys": (
        "rows",
        "json text re-serialised: the duplicate key PostgreSQL keeps is lost",
    ),
    "column-json-big-integer": (
        "rows",
        "json text re-serialised: the spacing PostgreSQL keeps is lost",
    ),
    "column-inet-prefix": ("rows", "the /24 prefix of an inet is dropped"),
    "column-varbit": ("rows", "a varbit column comes back under the bit-varying case, not varbit"),
    "error-wrong-case": (
        "error",
        "a guest error (wrong case for the column type) reported as invalid-query",
    ),
    "error-bad-numeric": (
        "error",
        "a guest error (a numeric that is not a number) reported as invalid-query",
    ),
    "error-param-count": ("error", "a guest error (too few parameters) reported as invalid-query"),
    "param-numeric-positive-exponent": (
        "hang",
        "no answer: the call hangs until the guest's timeout",
    ),
}
