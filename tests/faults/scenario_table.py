"""The fault-scenario table: declared once, in docs/reliability.md between its markers; read here into records.

Each row is ``| `id` | `command` | fault | intended outcome | status |`` where the status is ``holds`` or
``open: fix in `PATH` `` (the file that must change while the outcome does not hold yet; its test is a strict
xfail). A cell may hold a pipe written ``\\|``. A malformed table raises :class:`TableError` naming the doc and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
BEGIN = "<!-- scenarios:begin (the declaration: tests/faults/scenario_table.py reads these rows) -->"
END = "<!-- scenarios:end -->"
HEADER = ["scenario", "command", "fault", "intended outcome", "status"]
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
_OPEN = re.compile(r"open: fix in `([^`]+)`")


@dataclass(frozen=True)
class Scenario:
    """One hostile input or event, the command it hits and the outcome the suite asserts."""

    id: str
    command: str
    fault: str
    outcome: str
    open_in: str = ""  # the file to fix while the outcome does not hold yet (the test is a strict xfail)


class TableError(ValueError):
    """The scenario table is malformed; the message starts with ``DOC:LINE:``."""


def _cells(line: str) -> list[str]:
    """The cells of a markdown row ``| a | b |``, stripped, with ``\\|`` read as a pipe (no outer pipes: [])."""
    line = line.strip()
    if not line.startswith("|") or not line.endswith("|") or line.endswith("\\|"):
        return []
    return [cell.strip().replace("\\|", "|") for cell in _UNESCAPED_PIPE.split(line)[1:-1]]


def _unquote(cell: str) -> str:
    """A cell written as one code span (`` `x` ``) without its backticks; other cells unchanged."""
    return cell[1:-1] if len(cell) > 1 and cell[0] == cell[-1] == "`" else cell


def parse_table(text: str, doc: Path = DOC, root: Path = ROOT) -> list[Scenario]:
    """The scenarios of the table between the markers of ``text`` (the content of ``doc``), in table order.

    Raises :class:`TableError` naming ``doc`` and the line for missing markers, a wrong header, a row without
    exactly five cells, an id that is not lowercase-and-dashes, a duplicate id, an unknown status, or an
    ``open_in`` path that does not exist below ``root``.
    """
    doc = doc.relative_to(root) if doc.is_relative_to(root) else doc  # named as a user reads it
    lines = text.splitlines()
    try:
        first = lines.index(BEGIN) + 1
        stop = lines.index(END, first)
    except ValueError:
        raise TableError(f"{doc}: the scenario table markers {BEGIN!r} and {END!r} are missing") from None
    rows = [(number, line) for number, line in enumerate(lines[first:stop], first + 1) if line.strip()]
    if len(rows) < 2 or _cells(rows[0][1]) != HEADER or not _SEPARATOR.fullmatch(rows[1][1].strip()):
        raise TableError(f"{doc}:{first + 1}: the table must start with the header | {' | '.join(HEADER)} | "
                         "and its |---| line")
    scenarios: dict[str, Scenario] = {}
    for number, line in rows[2:]:
        where = f"{doc}:{number}"
        cells = _cells(line)
        if len(cells) != len(HEADER):
            raise TableError(f"{where}: a row needs exactly {len(HEADER)} cells, written | a | b | c | d | e |; found {len(cells)}")
        scenario_id, command, fault, outcome, status = cells
        scenario_id, command = _unquote(scenario_id), _unquote(command)
        if not _ID.fullmatch(scenario_id):
            raise TableError(f"{where}: the id {scenario_id!r} is not lowercase letters, digits and dashes")
        if scenario_id in scenarios:
            raise TableError(f"{where}: the id {scenario_id!r} is declared twice")
        opened = _OPEN.fullmatch(status)
        if status != "holds" and not opened:
            raise TableError(f"{where}: unknown status {status!r} (holds, or open: fix in `PATH`)")
        open_in = opened.group(1) if opened else ""
        if open_in and not (root / open_in).exists():
            raise TableError(f"{where}: {open_in!r} does not exist in the repository")
        scenarios[scenario_id] = Scenario(scenario_id, command, fault, outcome, open_in)
    return list(scenarios.values())


def read_table(doc: Path = DOC, root: Path = ROOT) -> list[Scenario]:
    """The scenarios declared in ``doc`` (docs/reliability.md)."""
    return parse_table(doc.read_text(), doc, root)
