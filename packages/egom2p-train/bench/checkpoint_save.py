"""Preemption budget: how long the SIGTERM checkpoint of an egom2p-base run takes (torchrun allows 30 s).

Builds the released B model (``egom2p_base_12e_12d_swiglu_nobias``, the released modalities) with an
AdamW state (one step on zero gradients fills ``exp_avg`` / ``exp_avg_sq``), then times what the
trainer's save does on rank 0: gathering the full state dicts (``get_state_dict``) and
``CheckpointManager.save`` (safetensors weights + config.json + train_state.pt, fsynced, renamed).
Prints one JSON line; the numbers go to docs/benchmarks.md.

usage: python packages/egom2p-train/bench/checkpoint_save.py [--out DIR] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from egom2p.model import EgoM2P
from egom2p.train.checkpoint import CheckpointManager
from egom2p.train.optim import build_optimizer
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

ROOT = Path(__file__).resolve().parents[3]
WINDOW_S = 30.0  # torchrun's SIGTERM -> SIGKILL grace period


def main() -> None:
    """Time the B model's full checkpoint save and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="directory to write into (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = EgoM2P.from_preset("egom2p-base", modalities=str(ROOT / "configs/modalities/egom2p.yaml"))
    optimizer = build_optimizer(model, 4e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        manager = CheckpointManager(tmp, keep_last_k=1, log=lambda _m: None)
        gather, save = [], []
        for step in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            model_sd, optim_sd = get_state_dict(model, optimizer,
                                                options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            t1 = time.perf_counter()
            path = manager.save(step, model_sd, model.config, {"step": step, "optimizer": optim_sd})
            t2 = time.perf_counter()
            gather.append(t1 - t0)
            save.append(t2 - t1)
        size = sum(f.stat().st_size for f in path.iterdir())
    total = min(g + s for g, s in zip(gather, save))
    print(json.dumps({"model": "egom2p-base", "parameters": params, "checkpoint_gb": round(size / 1e9, 3),
                      "gather_s": round(min(gather), 2), "write_s": round(min(save), 2), "total_s": round(total, 2),
                      "window_s": WINDOW_S, "fits": total < WINDOW_S, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
