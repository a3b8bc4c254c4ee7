"""Sibling requirements move in lockstep: every egom2p-* package has the same version, and each
requirement on a sibling (dependencies and extras) pins exactly that version with ``==``.

usage: python ci/check_lockstep.py   (exit 1 naming each offending requirement)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^(egom2p-[a-z]+)(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def main() -> int:
    """Check every packages/*/pyproject.toml; print problems and return the exit code."""
    projects = {p.parent.name: tomllib.loads(p.read_text())["project"] for p in sorted(ROOT.glob("packages/*/pyproject.toml"))}
    versions = {name: project["version"] for name, project in projects.items()}
    problems = []
    if len(set(versions.values())) != 1:
        problems.append(f"package versions differ: {versions}")
    for name, project in projects.items():
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        for requirement in requirements:
            match = REQUIREMENT.match(requirement)
            if match is None:
                continue
            sibling, _, spec, _ = match.groups()
            if sibling not in versions:
                problems.append(f"{name}: requires unknown sibling {sibling!r}")
            elif spec != f"=={versions[sibling]}":
                problems.append(f"{name}: {requirement!r} must pin {sibling}=={versions[sibling]}")
    for problem in problems:
        print(f"lockstep: {problem}")
    if not problems:
        print(f"lockstep: ok ({len(projects)} packages at {sorted(set(versions.values()))})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
