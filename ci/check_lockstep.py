"""Sibling requirements move in lockstep: every egom2p-* package has the same version, and each
requirement on a sibling (dependencies and extras) pins exactly that version with ``==``.

A package's version has one source, its ``src/egom2p/<name>/__init__.py``'s ``__version__``, which hatch reads
(``[tool.hatch.version]``; ``project.version`` is dynamic).

usage: python ci/check_lockstep.py   (exit 1 naming each offending requirement)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^(egom2p-[a-z]+)(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")
VERSION = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)


def package_version(pyproject: Path) -> str:
    """The version hatch gives the package of ``pyproject``: the ``__version__`` of the file its
    ``[tool.hatch.version]`` names."""
    path = tomllib.loads(pyproject.read_text())["tool"]["hatch"]["version"]["path"]
    match = VERSION.search((pyproject.parent / path).read_text())
    if match is None:
        raise SystemExit(f"lockstep: {pyproject.parent / path} has no __version__ = \"...\" line")
    return match.group(1)


def main() -> int:
    """Check every packages/*/pyproject.toml; print problems and return the exit code."""
    files = sorted(ROOT.glob("packages/*/pyproject.toml"))
    projects = {p.parent.name: tomllib.loads(p.read_text())["project"] for p in files}
    versions = {p.parent.name: package_version(p) for p in files}
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
