"""One row of the fault-scenario table (tests/faults/scenarios.py gathers them; each group file declares its own)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    """One hostile input or event, the command it hits and the outcome the suite asserts."""

    id: str
    command: str
    fault: str
    outcome: str
    open_in: str = ""  # the file to fix while the outcome does not hold yet (the test is a strict xfail)
