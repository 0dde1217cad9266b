"""What the archive says about the provider, from `pyproject.toml` (one source of truth).

`[project].version` is the archive's version; `[tool.provider-archive]` names the provider,
its vendor and its WIT directory.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    vendor: str
    version: str
    wit_dir: Path


def project_info(pyproject: Path = REPO_ROOT / "pyproject.toml") -> ProjectInfo:
    document = tomllib.loads(pyproject.read_text())
    section = document.get("tool", {}).get("provider-archive", {})
    return ProjectInfo(
        name=str(section.get("name", document["project"]["name"])),
        vendor=str(section.get("vendor", document["project"]["name"])),
        version=str(document["project"]["version"]),
        wit_dir=pyproject.parent / str(section.get("wit", "wit")),
    )
