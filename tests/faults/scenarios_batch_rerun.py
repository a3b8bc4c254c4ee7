"""Fault scenarios of batch inference reruns: the output root's manifest, finished shards, colliding and escaping names."""

from scenario_type import Scenario

SCENARIOS = [
    Scenario("batch-rerun-changed-settings", "egom2p-generate --data",
             "a rerun into the same --out DIR with another --temp",
             "exit 2, one line naming the setting and both values; --new-root writes to <out>-2 and prints it"),
    Scenario("batch-rerun-same", "egom2p-generate --data", "a rerun with the same settings",
             "resumed: every finished shard verified and skipped, nothing rewritten"),
    Scenario("batch-truncated-output-shard", "egom2p-generate --data",
             "an output shard cut off inside a member (disk full, a partial copy)",
             "a warning naming the shard, which is generated again with the same bytes"),
    Scenario("batch-colliding-names", "egom2p-generate --data",
             "two input shards with the same file name in different folders",
             "both outputs kept, each in its input's folder; two members of one tar sharing a key refused naming it"),
    Scenario("batch-escaping-name", "egom2p-generate --data",
             "a shard path with '..' that leads outside the --out DIR, or a symlinked output folder",
             "exit 2, one line naming the shard or link; nothing written outside the root"),
]
