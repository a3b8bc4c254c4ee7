"""Trainer overhead: steps/s of ``Trainer.train_step`` vs a bare forward/backward/AdamW loop.

Same model, same random batches (contract format, in memory, no data loading), float32 on CPU.
usage: python packages/egom2p-train/bench/trainer_overhead.py [--steps 10] [--dim 96] [--batch 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from egom2p.model import EgoM2P
from egom2p.train.config import load_config
from egom2p.train.distributed import DistInfo
from egom2p.train.trainer import Trainer


class RandomBatches:
    """An endless stream of the same few random batches (no I/O in the measurement)."""

    def __init__(self, modalities, batch_size: int, n: int = 4):
        g = torch.Generator().manual_seed(0)
        self.batches = []
        for _ in range(n):
            batch = {}
            for name, spec in modalities.items():
                k = spec.num_tokens
                inp = torch.rand(batch_size, k, generator=g) > 0.3
                batch[name] = {"tensor": torch.randint(0, spec.vocab_size, (batch_size, k), generator=g),
                               "input_mask": inp, "target_mask": ~inp}
            self.batches.append(batch)
        self.stats = {}

    def __iter__(self):
        i = 0
        while True:
            yield self.batches[i % len(self.batches)]
            i += 1

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tokens", type=int, default=40, help="input and target budget each (at most 80: the tiny set)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        # The demo config with the benchmark's sizes; its data config is only read, not loaded.
        cfg = load_config("demo-cpu", [
            f"model.dim={args.dim}", f"model.encoder_depth={args.depth}", f"model.decoder_depth={args.depth}",
            "model.num_heads=4", f"output_dir={out}", f"loader.batch_size={args.batch}",
            f"schedule.epoch_size={args.batch * 1000}", "schedule.epochs=2", "schedule.warmup_epochs=1"])
        info = DistInfo(0, 1, 0, torch.device("cpu"))
        budgets = (args.tokens, args.tokens)

        torch.manual_seed(0)
        model = EgoM2P(cfg.model_config())
        data = RandomBatches(model.modalities, args.batch)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        it = iter(data)

        def bare_step():
            out = model(next(it), num_encoder_tokens=budgets[0], num_decoder_tokens=budgets[1])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        torch.manual_seed(0)
        trainer = Trainer(cfg, EgoM2P(cfg.model_config()), RandomBatches(model.modalities, args.batch), info, budgets,
                          log=lambda m: None)
        for name, step in (("bare loop", bare_step), ("Trainer.train_step", trainer.train_step)):
            step()  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            dt = (time.perf_counter() - t0) / args.steps
            print(f"{name:20s} {dt * 1000:8.1f} ms/step  {args.batch * 2 * args.tokens / dt:10.0f} budget tokens/s")


if __name__ == "__main__":
    main()
