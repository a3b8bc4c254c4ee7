"""Helpers for the cross-package tests: the demo data config rewritten for test data, a trainer runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from egom2p.core.presets import preset_file

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def write_data_config(path: Path, patterns: dict[str, str], datasets: tuple[str, ...] = ("synth_full", "synth_nogaze")) -> Path:
    """The shipped data config demo with its shard paths replaced by `patterns` ("<split>/<dataset>" -> pattern)."""
    demo = yaml.safe_load(Path(preset_file("data", "demo")).read_text())
    for split in ("train", "val"):
        entries = demo[split]["datasets"]
        for name in list(entries):
            if name not in datasets:
                del entries[name]
                continue
            entries[name]["data_path"] = patterns[f"{split}/{name}"]  # alphas_config: a preset name
    if len(datasets) != len(demo["train"].get("weights", [])):
        demo["train"]["weights"] = [1.0] * len(datasets)
    path.write_text(yaml.safe_dump(demo))
    return path


def run_trainer(output_dir: Path, data_config: Path, *overrides: str, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """`egom2p-train --config demo-cpu` with test overrides, as a user runs it."""
    cmd = [str(BIN / "egom2p-train"), "--config", "demo-cpu",
           f"output_dir={output_dir}", f"data={data_config}", *overrides]
    full_env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_metrics(output_dir: Path) -> list[dict]:
    """The trainer's metrics.jsonl as a list of dicts."""
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
