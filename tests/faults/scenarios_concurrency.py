"""Concurrency faults: two trainers on one run directory, a requeue after a kill, the directory removed mid-run."""

from __future__ import annotations

from scenario_type import Scenario

SCENARIOS = [
    Scenario("lock-second-trainer", "egom2p-train", "a second trainer started on the output_dir of a running one",
             "the second exits 2 with one line naming the directory and the holder (host, pid, start time, SLURM "
             "job) and writes nothing; the first finishes all its steps"),
    Scenario("lock-stale-requeue", "egom2p-train",
             "kill -9 a trainer (its lock file stays), then the same command (a SLURM requeue)",
             "takes over the stale lock with a line naming the dead holder, resumes and finishes"),
    Scenario("output-dir-deleted-mid-run", "egom2p-train", "output_dir removed while training",
             "exit 2 at the next metrics or checkpoint write, one line naming output_dir; nothing recreated"),
]
