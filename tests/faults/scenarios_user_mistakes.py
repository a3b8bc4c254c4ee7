"""Fault scenarios of user mistakes that once ended in a traceback or in a message that did not match the files."""

from scenario_type import Scenario

SCENARIOS = [
    Scenario("convert-out-is-file", "egom2p-convert", "--out naming an existing file",
             "exit 2 before converting, one line naming the file"),
    Scenario("generate-nonfinite-guidance", "egom2p-generate", "--guide ...:nan, --cfg inf or --temp inf",
             "exit 2, one line naming the option and the value"),
    Scenario("generate-empty-cond", "egom2p-generate", "--cond with a token file of 0 samples",
             "exit 2, one line naming the file and its shape"),
    Scenario("train-domain-without-folder", "egom2p-train",
             "a dataset whose domains name tok_gaze while its pattern lists [cam,depth,rgb]",
             "exit 2 before the first step, one line naming the key, the modality and its folder"),
    Scenario("train-every-sample-bad", "egom2p-train", "every camera member of every training shard holds float tokens",
             "exit 1 after max_bad_fraction is passed: one line with the count and the reason, no traceback"),
    Scenario("device-cuda-without-cuda", "egom2p-generate, egom2p-eval",
             "--device cuda on a machine without CUDA", "exit 2 before loading anything, one line naming --device"),
    Scenario("generate-out-without-suffix", "egom2p-generate", "--out preds/clip (no .npz)",
             "the printed path is the written file, preds/clip.npz"),
]
