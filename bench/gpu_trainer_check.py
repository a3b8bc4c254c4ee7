"""The trainer on a GPU, end to end: what a user's first CUDA run goes through, as the commands a user runs.

egom2p-tiny on the demo data (the shipped config `demo-cpu` with `device=cuda`, bf16 autocast, the Triton
attention kernel, packed batches with `loader.pack_rows` null, background checkpoints, loader workers, one
validation), then `egom2p-eval rgb2depth` from the run directory on CUDA. Fails (exit 1) unless training
and evaluation exit 0, the loss falls, every metrics line holds `valid_tok_s`, `mfu_computed` and
`mfu_valid`, and two complete step directories exist. Appends one result row (steps/s, losses, MFU,
accuracy) to `--json`. The demo data is synthesized into a temporary folder first (6 s).

usage: python bench/gpu_trainer_check.py [--steps 300] [--json rows.jsonl] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rows import append_row  # bench/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
# The shipped data config demo's shard patterns, under the temporary data folder this check synthesizes.
SHARDS = {"train": "{root}/train/[{folders}]/{dataset}/shard-{{000000..000007}}.tar",
          "val": "{root}/val/[{folders}]/{dataset}/shard-000000.tar"}
DATASETS = {"synth_full": "cam,depth,gaze,rgb", "synth_nogaze": "cam,depth,rgb"}
# The console scripts' entry points, run through this interpreter (the GPU image has no installed scripts).
CLI = {name: [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"] for name, module in (
    ("egom2p-data", "egom2p.data.cli"), ("egom2p-train", "egom2p.train.cli"), ("egom2p-eval", "egom2p.generate.eval_cli"))}


def run(name: str, *args: str) -> None:
    """Run one CLI from the repository root, echoing it; exit 1 with its status when it fails."""
    print(f"$ {name} {' '.join(args)}", flush=True)
    done = subprocess.run([*CLI[name], *args], cwd=ROOT)
    if done.returncode:
        sys.exit(f"gpu_trainer_check: {name} exited {done.returncode}")


def check_metrics(run_dir: Path, cuda: bool) -> tuple[list[dict], list[str]]:
    """The metrics lines of the run and what is wrong with them (MFU is only known on a GPU)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [m for m in lines if "loss" in m and "step" in m]
    problems = []
    if len(steps) < 2:
        problems.append(f"{len(steps)} training metrics lines")
    elif not steps[-1]["loss"] < steps[0]["loss"]:
        problems.append(f"loss did not fall: {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}")
    for key in ("valid_tok_s", "mfu_computed", "mfu_valid") if cuda else ("valid_tok_s",):
        missing = [m["step"] for m in steps if m.get(key) is None]
        if missing:
            problems.append(f"{key} missing at steps {missing[:5]}")
    return steps, problems


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, check; print and append the result row."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", help="append the result row to this JSON-lines file")
    opts = p.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="egom2p-gpu-trainer-"))
    run("egom2p-data", "synth", "--out", str(out / "data"))
    paths = {(split, d): SHARDS[split].format(root=out / "data", folders=f, dataset=d)
             for split in SHARDS for d, f in DATASETS.items()}  # fmt: skip
    run_dir = out / "run"
    half = max(opts.steps // 2, 1)
    start = time.perf_counter()
    run("egom2p-train", "--config", "demo-cpu", f"output_dir={run_dir}", f"device={opts.device}",
        "dtype=bfloat16" if opts.device == "cuda" else "dtype=float32", "model.attn_backend=auto",
        "loader.pack_rows=null", "loader.num_workers=4", f"schedule.max_steps={opts.steps}",
        f"checkpoint.every_steps={half}", f"metrics.val_every_steps={half}", f"metrics.log_every_steps={max(opts.steps // 8, 1)}",
        *(f"data.{split}.datasets.{d}.data_path={path}" for (split, d), path in paths.items()))
    train_s = time.perf_counter() - start
    eval_json = out / "eval-rgb2depth.json"
    run("egom2p-eval", "--checkpoint", str(run_dir), "--data", paths["val", "synth_full"], "--task", "rgb2depth", "--max-samples", "64",
        "--batch-size", "16", "--device", opts.device, "--out", str(eval_json))
    steps, problems = check_metrics(run_dir, opts.device == "cuda")
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if (p / "model.safetensors").is_file()]
    checkpoints = [p.name for p in sorted(found, key=lambda p: int(p.name.split("-")[1]))]
    if len(checkpoints) != 2:
        problems.append(f"step directories {checkpoints}, expected 2")
    result = json.loads(eval_json.read_text())
    result = result[0] if isinstance(result, list) else result
    last = steps[-1] if steps else {}
    dtype = "bf16" if opts.device == "cuda" else "fp32"
    row = {"bench": "trainer", "impl": f"egom2p-tiny demo, {opts.device} {dtype}, auto backend, packed", "steps": opts.steps,
           "s": round(train_s, 1), "steps_per_s": round(opts.steps / train_s, 2),
           "first_loss": steps[0]["loss"] if steps else None, "final_loss": last.get("loss"),
           "valid_tok_s": last.get("valid_tok_s"), "mfu_valid": last.get("mfu_valid"),
           "mfu_computed": last.get("mfu_computed"), "peak_gib": last.get("peak_memory_gib"),
           "rgb2depth_accuracy": result.get("accuracy"), "checkpoints": checkpoints,
           "status": "ok" if not problems else "; ".join(problems)}  # fmt: skip
    append_row(opts.json, row)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
