"""Integrity faults: checkpoints damaged after they were written, dtypes that disagree with the config, a disk that
fills during a save, a run larger than the machine, and values that make training meaningless."""

from __future__ import annotations

from scenario_type import Scenario

SCENARIOS = [
    Scenario("ckpt-bitflip-resume", "egom2p-train",
             "one byte of the newest step's model.safetensors flipped, then the same command",
             "resumes from the previous step directory after one warning naming the file and what differs; finishes"),
    Scenario("ckpt-bitflip-generate", "egom2p-generate", "one byte of the newest step's model.safetensors flipped",
             "exit 2, one line naming the file (its content differs from integrity.json)"),
    Scenario("ckpt-dtype-mismatch", "egom2p-generate", "config.json says dtype float32, one tensor is stored float16",
             "exit 2, one line naming config.json, the key 'dtype', the tensor and both dtypes"),
    Scenario("ckpt-disk-full", "egom2p-train",
             "the file size limit (ulimit -f) is hit while a resumed run writes its next checkpoint",
             "exit 2, one line saying \"disk full\" naming the step directory; the previous checkpoint intact and "
             "verified; no partial step directory"),
    Scenario("memory-over-machine", "egom2p-train",
             "a micro batch of 10 million windows for the camera tokenizer (an estimated 8,600 GiB of activations)",
             "exit 2 before the model is built, one line with the estimate, the free memory and what to change "
             "(check_memory: false starts anyway)"),
    Scenario("config-zero-lr", "egom2p-train", "optim.blr=0", "exit 2, one line naming the key"),
    Scenario("config-infinite-lr", "egom2p-train", "optim.blr=.inf", "exit 2, one line naming the key"),
    Scenario("config-negative-wd", "egom2p-train", "optim.weight_decay=-0.05", "exit 2, one line naming the key"),
]
