"""The README's main job: synthesize the demo data, train egom2p-tiny on CPU, evaluate it.

Each stage runs the real console script a user would run (so the demo also proves the CLIs work),
then a small table compares the accuracy reached with chance and with a perfect model under the
generator's rules. Extra arguments are passed to the trainer as overrides, e.g.
`hatch run demo schedule.max_steps=50`. The run's weights are its last step directory,
`runs/demo-cpu/checkpoints/step-N/`; the run directory itself names it for every CLI. Its curves are
drawn by `egom2p-train plot runs/demo-cpu` into `runs/demo-cpu/metrics.png` (needs matplotlib, the
`egom2p-train[viz]` extra; without it the demo says how to get them).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "demo"
CONFIG = "demo-cpu"  # the config egom2p-train ships, by name: its relative paths resolve against ROOT (the cwd)
RUN = "runs/demo-cpu"
VAL = "data/demo/val/[cam,depth,gaze,rgb]/synth_full/shard-000000.tar"
TASKS = ("rgb2depth", "rgb2cam")


def run(cmd: list[str]) -> None:
    """Run one stage, echoing the command; stop the demo with its exit status if it fails."""
    print("\n$ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"demo: stage failed with exit status {result.returncode}: {' '.join(cmd)}")


def script(name: str) -> str:
    """The console script installed beside this interpreter (the hatch environment's bin/)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit(f"demo: console script {name!r} not found next to {sys.executable}; run `hatch run demo`")
    return found


def main(overrides: list[str]) -> None:
    from egom2p.core.checkpoints import resolve_checkpoint
    from egom2p.data.synth import chance_accuracy, perfect_accuracy

    start = time.time()
    if not (DATA / "train").is_dir() or not (DATA / "val").is_dir():
        run([script("egom2p-data"), "synth", "--out", str(DATA.relative_to(ROOT))])
    else:
        print(f"demo data found in {DATA.relative_to(ROOT)}/ (delete it to synthesize again)")
    # A fresh run each time: auto-resume would otherwise continue (and finish at once) a previous demo.
    shutil.rmtree(ROOT / RUN, ignore_errors=True)
    run([script("egom2p-train"), "--config", CONFIG, f"output_dir={RUN}", *overrides])
    results = {}
    for task in TASKS:
        out = ROOT / RUN / f"eval-{task}.json"
        run([script("egom2p-eval"), "--checkpoint", RUN, "--data", VAL, "--task", task,
             "--max-samples", "64", "--batch-size", "16", "--json", str(out.relative_to(ROOT))])
        results[task] = json.loads(out.read_text())
    print("\n| task | accuracy | chance | perfect model | share of perfect |")
    print("|---|---|---|---|---|")
    for task, res in results.items():
        res = res[0] if isinstance(res, list) else res
        acc, perfect = res["accuracy"], perfect_accuracy(task)
        print(f"| {task} | {acc:.3f} | {chance_accuracy(task):.3f} | {perfect:.3f} | {acc / perfect:.0%} |")
    if importlib.util.find_spec("matplotlib") is not None:
        run([script("egom2p-train"), "plot", RUN])
        curves = f"curves: {RUN}/metrics.png"
    else:
        curves = "curves: pip install 'egom2p-train[viz]', then egom2p-train plot " + RUN
    step = resolve_checkpoint(ROOT / RUN).relative_to(ROOT)
    print(f"\ndemo finished in {time.time() - start:.0f} s; checkpoint: {step}; {curves}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # before anything runs: the demo starts by deleting its old run
        print(__doc__.strip())
        sys.exit(0)
    main(sys.argv[1:])
