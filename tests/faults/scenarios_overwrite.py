"""Fault scenarios of dataset writes: an existing dataset is never written over unless told (issue 25)."""

from __future__ import annotations

from scenario_type import Scenario

SCENARIOS = [
    Scenario("write-existing-dataset", "egom2p-data write", "a second write into a dataset folder that holds shards",
             "exit 2, one line naming the folder and --overwrite / --append; the shards untouched"),
    Scenario("write-overwrite-killed", "egom2p-data write --overwrite", "kill -9 while the new shards are written",
             "the old dataset intact (validate passes); the rerun removes the staged shards, says so, and swaps the "
             "new dataset in"),
    Scenario("write-append", "egom2p-data write --append", "more samples for an existing dataset",
             "shards numbered after the last one, default keys continued, validate passes; a key already in the "
             "dataset: exit 2 naming it and its shard"),
    Scenario("encode-existing-dataset", "egom2p-tokenize encode",
             "a dataset folder holding shards another tool wrote",
             "exit 2, one line naming the folder, --overwrite and --append; --append numbers the new shards after the "
             "old ones (a repeated window key refused), --overwrite replaces them"),
]
