"""The release-archive tests run only from `make release-test` (RELEASE_TESTS=1): they need
the two-target archive, whose aarch64 build (an emulated root, minutes the first time) `make
test` never waits for."""

from __future__ import annotations

import os

if not os.environ.get("RELEASE_TESTS"):
    collect_ignore_glob = ["test_*.py"]
