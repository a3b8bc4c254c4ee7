"""Preemption budget: how long the SIGTERM checkpoint of an egom2p-base run takes (torchrun allows 30 s).

Builds the released B model (``egom2p_base_12e_12d_swiglu_nobias``, the released modalities) with an
AdamW state (one step on zero gradients fills ``exp_avg`` / ``exp_avg_sq``), then times what the
trainer's save does on rank 0: gathering the full state dicts (``get_state_dict``) and
``CheckpointManager.save`` (safetensors weights + config.json + train_state.pt, fsynced, renamed).

Then, in the same run, what ``checkpoint.async_save`` (the default for the periodic checkpoints) costs the
training loop: the gather plus ``detached`` (on this CPU run it copies every tensor, which still belongs to the
live model or optimizer) and ``save_async`` returning (``async_blocked_s``), the background write
(``async_write_s``), and how fast a stand-in for the loop (``loop_rate``) runs in the main thread while the
writer works, relative to no writer (``loop_speed_during_write``: 1.0 = unaffected).
Prints one JSON line; the numbers go to docs/benchmarks.md.

usage: python packages/egom2p-train/bench/checkpoint_save.py [--out DIR] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from egom2p.model import EgoM2P
from egom2p.train.checkpoint import CheckpointManager, detached
from egom2p.train.optim import build_optimizer
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

WINDOW_S = 30.0  # torchrun's SIGTERM -> SIGKILL grace period
FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # the trainer's options


def loop_rate(x: torch.Tensor, until, min_s: float = 0.0) -> float:
    """Units of a stand-in training loop per second until ``until()`` is false (and at least ``min_s`` seconds).

    A unit is a small single-threaded matmul plus some pure Python: the main thread of a GPU run launches
    kernels and runs Python, so what slows it is the writer holding the GIL or a core, which this measures.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    n, start = 0, time.perf_counter()
    while until() or time.perf_counter() - start < min_s:
        x @ x
        sum(range(200))
        n += 1
    torch.set_num_threads(threads)
    return n / max(time.perf_counter() - start, 1e-9)


def main() -> None:
    """Time the B model's full checkpoint save, synchronous and in the background, and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="directory to write into (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = EgoM2P.from_preset("egom2p-base", modalities="egom2p")
    optimizer = build_optimizer(model, 4e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(128, 128)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        manager = CheckpointManager(tmp, keep_last_k=1, log=lambda _m: None)
        gather, save, blocked, copy, write, speed = [], [], [], [], [], []
        for step in range(1, args.repeats + 1):  # synchronous: the loop waits for all of it
            t0 = time.perf_counter()
            model_sd, optim_sd = get_state_dict(model, optimizer, options=FULL_STATE)
            t1 = time.perf_counter()
            path = manager.save(step, model_sd, model.config, {"step": step, "optimizer": optim_sd})
            t2 = time.perf_counter()
            gather.append(t1 - t0)
            save.append(t2 - t1)
        size = sum(f.stat().st_size for f in path.iterdir())
        del model_sd, optim_sd
        idle = loop_rate(x, lambda: False, min_s=2.0)
        for step in range(args.repeats + 1, 2 * args.repeats + 1):  # background: the loop waits for the gather
            t0 = time.perf_counter()
            model_sd, optim_sd = get_state_dict(model, optimizer, options=FULL_STATE)
            t1 = time.perf_counter()
            model_sd, state = detached((model_sd, {"step": step, "optimizer": optim_sd}), model, optimizer)
            t2 = time.perf_counter()
            manager.save_async(step, model_sd, model.config, state)
            t3 = time.perf_counter()
            del model_sd, optim_sd, state
            speed.append(loop_rate(x, lambda: manager.in_flight) / idle)
            manager.wait()
            t4 = time.perf_counter()
            blocked.append(t3 - t0)
            copy.append(t2 - t1)
            write.append(t4 - t3)
    total = min(g + s for g, s in zip(gather, save))
    print(json.dumps({"model": "egom2p-base", "parameters": params, "checkpoint_gb": round(size / 1e9, 3),
                      "gather_s": round(min(gather), 2), "write_s": round(min(save), 2), "total_s": round(total, 2),
                      "window_s": WINDOW_S, "fits": total < WINDOW_S,
                      "async_blocked_s": round(min(blocked), 2), "async_copy_s": round(min(copy), 2),
                      "async_write_s": round(min(write), 2),
                      "loop_speed_during_write": round(sum(speed) / len(speed), 2), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
