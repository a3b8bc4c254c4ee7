"""Surviving bad steps and being asked to stop: non-finite step skipping and SIGTERM handling."""

from __future__ import annotations

import signal
import types


class NonFiniteStepError(RuntimeError):
    """Raised when ``max_bad_steps`` non-finite steps happened in a row."""


class BadStepGuard:
    """Counts non-finite steps; the trainer skips each one and stops after K in a row."""

    def __init__(self, max_bad_steps: int):
        if max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1, got {max_bad_steps}")
        self.max_bad_steps = max_bad_steps
        self.in_a_row = 0
        self.total_skipped = 0

    def record(self, finite: bool) -> bool:
        """Record one step; True when it must be skipped. Raises once K bad steps came in a row."""
        if finite:
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        self.total_skipped += 1
        if self.in_a_row >= self.max_bad_steps:
            raise NonFiniteStepError(
                f"{self.in_a_row} non-finite steps in a row (max_bad_steps={self.max_bad_steps})")
        return True

    def state_dict(self) -> dict[str, int]:
        """Counters for the checkpoint."""
        return {"in_a_row": self.in_a_row, "total_skipped": self.total_skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counters of ``state_dict``."""
        self.in_a_row, self.total_skipped = state["in_a_row"], state["total_skipped"]


class StopRequest:
    """Turns SIGTERM (and SIGINT) into a flag that the loop checks between steps.

    The loop then writes a checkpoint and exits cleanly instead of dying mid-step; the previous
    handlers come back on ``restore()``.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.requested: str | None = None
        self._previous = {s: signal.signal(s, self._handle) for s in signals}

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        """Put back the signal handlers that were active before."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
