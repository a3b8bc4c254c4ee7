"""Fault scenarios of the config-change class: a resume with an edited config, config files that are not data."""

from __future__ import annotations

from scenario_type import Scenario

SCENARIOS = [
    # -- a changed run is a visible decision
    Scenario("resume-data-changed", "egom2p-train", "resume after a dataset's in_domains were edited",
             "exit 2 before any step, one line naming the changed key and resume.allow_changes"),
    Scenario("resume-allowed-change", "egom2p-train", "the same edit with resume.allow_changes=[data.train.datasets]",
             "resumes and finishes; the change is logged with its old and new value"),
    Scenario("resume-lr-changed", "egom2p-train", "resume with another optim.blr",
             "resumes with the new LR; the change is logged with its old and new value"),
    # -- config files are data, not programs
    Scenario("config-duplicate-key", "egom2p-train", "--config with a key given twice",
             "exit 2, one line naming the file and the line"),
    Scenario("config-alias-bomb", "egom2p-train", "--config whose YAML aliases expand to a billion nodes",
             "exit 2 within seconds and without memory blow-up, one line naming the file and the line"),
    Scenario("config-is-directory", "egom2p-train", "--config naming a folder", "exit 2, one line naming the path"),
    Scenario("config-binary-file", "egom2p-train", "data= naming a binary file",
             "exit 2, one line naming the file and the line"),
    Scenario("config-symlink-loop", "egom2p-train", "model.modalities= naming a symlink that points to itself",
             "exit 2, one line naming the path"),
    Scenario("config-file-as-folder", "egom2p-train", "--config path that goes through a file (file.yaml/x.yaml)",
             "exit 2, one line naming the file in the way"),
]
