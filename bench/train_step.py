"""Time one EgoM2P training step (forward + backward, optionally an AdamW step) in one batch layout.

Layouts (``--layout``), all computing the same loss:
  static   one row per sample, budget wide (``num_*_tokens`` = the budgets): fixed shapes, padding computed
  trimmed  one row per sample, cut to the batch's fullest sample (budgets None: one host sync per step)
  packed   packed on the CPU as the trainer packs (``egom2p.train.packing``, ``loader.pack``): the selected
           tokens of all samples in ``--pack-rows`` rows (default: the cheapest row count for the attention
           backend, the trainer's default); packing time is reported apart (``pack_ms``)
``--compare`` runs every layout (or those of ``--layouts``) on the same batch, each in a fresh process,
prints one row per layout and a last row with each layout's step time relative to ``trimmed``, and
exits 1 when the layouts' losses disagree (so the dry run checks packing too).

Masks (``--masking``):
  released  the released recipe's masking (Dirichlet budgets, the alphas ``mix_mod4_all2all_uni``)
  fill      each sample fills ``fill_s`` of both budgets, ``fill_s`` uniform in ``fill +- spread/2``
Token ids are random. Reported: step time, ``valid_tok_s`` (input + target tokens per second), and the
trainer's own accounting (``egom2p.train.throughput``, the formulas of ``egom2p.model.cost``):
``achieved_tflops`` on valid tokens and, on a GPU, ``mfu_valid`` / ``mfu_computed``; peak memory (on
CPU the process's ``ru_maxrss``: every CPU measurement runs in a fresh process).

Examples:
  python bench/train_step.py --dry-run --compare
  python bench/train_step.py --masking released --batch-size 4 --compare     # issue 14, CPU
  python bench/train_step.py --preset egom2p-base --batch-size 1 --dtype fp32 --threads 2 --backend sdpa
  python bench/train_step.py --device cuda --dtype bf16 --batch-size 4 --masking released --backend triton \
      --fused-loss --layout packed
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from _rows import append_row  # bench/ is on sys.path when a script runs
from egom2p.core.packing import PackedBatch
from egom2p.data.masking import UnifiedMasking
from egom2p.model import EgoM2P, preset_config
from egom2p.train.config import LoaderConfig
from egom2p.train.metrics import peak_flops
from egom2p.train.packing import pack_micro_batch
from egom2p.train.recipes.egom2p import move_batch
from egom2p.train.throughput import batch_flops, count_tokens

RELEASED_ALPHAS = "mix_mod4_all2all_uni"  # shipped by egom2p-data, by name
LAYOUTS = ("static", "trimmed", "packed")
_TORCH_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}  # --dtype -> the trainer's dtype names
Batch = dict[str, dict[str, torch.Tensor]]


def fill_masks(model: EgoM2P, batch_size: int, enc_tokens: int, dec_tokens: int, fill: float, spread: float,
               gen: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Per modality (input_mask, target_mask): sample s gets ``fill_s * budget`` inputs and as many disjoint
    targets, spread over all tokens, ``fill_s`` uniform in ``fill +- spread / 2`` (clipped to [1/budget, 1])."""
    specs = model.modalities
    total = sum(s.num_tokens for s in specs.values())
    fills = (fill + spread * (torch.rand(batch_size, generator=gen) - 0.5)).clamp(1 / min(enc_tokens, dec_tokens), 1.0)
    n_in = (fills * enc_tokens).long().clamp(min=1)
    n_tg = (fills * dec_tokens).long().clamp(min=1)
    if int((n_in + n_tg).max()) > total:
        raise SystemExit(f"budgets {int(n_in.max())}+{int(n_tg.max())} exceed the {total} tokens of the modalities")
    rank = torch.argsort(torch.rand(batch_size, total, generator=gen), dim=1)
    is_input = rank < n_in[:, None]
    is_target = (rank >= n_in[:, None]) & (rank < (n_in + n_tg)[:, None])
    masks, start = {}, 0
    for name, spec in specs.items():
        stop = start + spec.num_tokens
        masks[name] = (~is_input[:, start:stop], ~is_target[:, start:stop])
        start = stop
    return masks


def released_masks(model: EgoM2P, batch_size: int, enc_tokens: int, dec_tokens: int,
                   gen: torch.Generator) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Per modality (input_mask, target_mask) drawn by the released recipe's masking at these budgets."""
    names = list(model.modalities)
    masking = UnifiedMasking.from_config(model.modalities, names, names, enc_tokens, dec_tokens,
                                         alphas_config=RELEASED_ALPHAS)  # fmt: skip
    flat = {n: torch.zeros(batch_size, s.num_tokens, dtype=torch.int64) for n, s in model.modalities.items()}
    return {n: (d["input_mask"], d["target_mask"]) for n, d in masking.mask_batch(flat, gen).items()}


def make_batch(model: EgoM2P, opts: argparse.Namespace) -> Batch:
    """A masked batch (the batch contract, CPU) with random token ids and ``opts.masking``'s masks."""
    gen = torch.Generator().manual_seed(opts.seed)
    if opts.masking == "released":
        masks = released_masks(model, opts.batch_size, opts.enc_tokens, opts.dec_tokens, gen)
    else:
        masks = fill_masks(model, opts.batch_size, opts.enc_tokens, opts.dec_tokens, opts.fill, opts.fill_spread, gen)
    batch = {}
    for name, spec in model.modalities.items():
        input_mask, target_mask = masks[name]
        tokens = torch.randint(0, spec.vocab_size, (opts.batch_size, *spec.shape), generator=gen)
        batch[name] = {"tensor": tokens, "input_mask": input_mask.reshape(tokens.shape),
                       "target_mask": target_mask.reshape(tokens.shape)}  # fmt: skip
    return batch


def lay_out(model: EgoM2P, batch: Batch, opts: argparse.Namespace) -> tuple[Batch | PackedBatch, tuple[int | None, int | None], dict]:
    """The batch in ``opts.layout``, the budgets to pass to the model, and layout facts for the result row."""
    budgets = (opts.enc_tokens, opts.dec_tokens)
    if opts.layout == "static":
        return batch, budgets, {}
    if opts.layout == "trimmed":
        return batch, (None, None), {}
    start = time.perf_counter()
    packed = pack_micro_batch(model, batch, budgets, opts.pack_rows, opts.pack_multiple)  # as the trainer packs
    facts = {"pack_ms": round(1000 * (time.perf_counter() - start), 1), "pack_rows": packed.num_rows,
             "row_widths": list(packed.widths), "packing_efficiency": round(packed.efficiency()["total"], 4)}
    return packed, budgets, facts


def measure(opts: argparse.Namespace) -> dict:
    """Build the model and time ``opts.steps`` steps after ``opts.warmup`` untimed ones."""
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    device = torch.device(opts.device)
    cfg = preset_config(opts.preset, attn_backend=opts.backend, fused_loss=opts.fused_loss)
    model = EgoM2P(cfg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if opts.optimizer_step else None
    cpu_batch, budgets, facts = lay_out(model, make_batch(model, opts), opts)
    tokens = count_tokens(cpu_batch, budgets)  # before the step, on the CPU, as the trainer counts
    computed_flops, valid_flops = batch_flops(model, tokens)
    batch = move_batch(cpu_batch, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.dtype == "bf16")
    losses = []

    def step() -> None:
        with autocast:
            out = model(batch, num_encoder_tokens=budgets[0], num_decoder_tokens=budgets[1], check_vocab=False)
        out.loss.backward()
        losses.append(out.loss.detach())
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(opts.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(opts.steps):
        step()
    sync()
    step_s = (time.perf_counter() - start) / opts.steps
    slots = tokens.encoder_slots + tokens.decoder_slots
    result = {
        "bench": "train_step", "preset": opts.preset, "device": str(device), "dtype": opts.dtype,
        "backend": opts.backend, "fused_loss": opts.fused_loss, "layout": opts.layout, "masking": opts.masking,
        "batch_size": opts.batch_size, "enc_tokens": opts.enc_tokens, "dec_tokens": opts.dec_tokens,
        "fill": opts.fill, "fill_spread": opts.fill_spread, "threads": opts.threads,
        "optimizer_step": opts.optimizer_step, "loss": float(losses[0]), **facts,
        "valid_tokens": tokens.valid, "computed_slots": slots, "valid_fraction": round(tokens.valid / slots, 4),
        "step_s": round(step_s, 4), "valid_tok_s": round(tokens.valid / step_s, 1),
        "achieved_tflops": round(valid_flops / step_s / 1e12, 3),
    }  # fmt: skip
    if device.type == "cuda":
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        peak = opts.peak_tflops * 1e12 if opts.peak_tflops else peak_flops(device, _TORCH_DTYPE_NAMES[opts.dtype])
        if peak:  # the trainer's peak table and rule (TF32 at half the bf16 rate)
            result["mfu_valid"] = round(valid_flops / step_s / peak, 4)
            result["mfu_computed"] = round(computed_flops / step_s / peak, 4)
    else:
        result["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    return result


def run_fresh(argv: list[str]) -> dict:
    """One measurement in a fresh process (its own peak memory; it appends its row to ``--json``): the row."""
    proc = subprocess.run([sys.executable, __file__, *argv, "--in-process"], capture_output=True, text=True)
    if proc.returncode < 0:  # a signal: on a CPU machine usually the kernel's OOM killer
        sys.exit(f"{' '.join(argv)}: killed by signal {-proc.returncode} (out of memory?)\n{proc.stderr[-2000:]}")
    if proc.returncode:
        sys.exit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(argv: list[str], opts: argparse.Namespace) -> int:
    """Every layout of ``opts.layouts`` on the same batch, one fresh process each; 1 when the losses disagree."""
    rows = {}
    for layout in opts.layouts:
        rows[layout] = run_fresh([*argv, "--layout", layout])
        print(json.dumps(rows[layout]), flush=True)
    base = rows.get("trimmed", next(iter(rows.values())))
    losses = [row["loss"] for row in rows.values()]
    spread = (max(losses) - min(losses)) / max(abs(base["loss"]), 1e-12)
    tolerance = 1e-4 if opts.dtype == "fp32" else 2e-2
    summary = {
        "bench": "train_step_compare", "baseline": base["layout"],
        "step_s": {k: r["step_s"] for k, r in rows.items()},
        "speedup_vs_baseline": {k: round(base["step_s"] / r["step_s"], 2) for k, r in rows.items()},
        "valid_fraction": {k: r["valid_fraction"] for k, r in rows.items()},
        "loss_rel_spread": float(f"{spread:.2e}"), "losses_agree": spread <= tolerance,
    }  # fmt: skip
    append_row(opts.json, summary)
    if spread > tolerance:
        print(f"layouts disagree: losses {losses} (relative spread {spread:.2e} > {tolerance})", file=sys.stderr)
        return 1
    return 0


def _rows(value: str) -> int | None:
    """A --pack-rows value: a row count, or "auto" (None: egom2p.train.packing picks the cheapest)."""
    return None if value == "auto" else int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring for examples)."""
    loader = LoaderConfig()  # the trainer's packing defaults
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="egom2p-base")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--enc-tokens", type=int, default=2048)
    p.add_argument("--dec-tokens", type=int, default=2048)
    p.add_argument("--masking", choices=("fill", "released"), default="fill")
    p.add_argument("--fill", type=float, default=1.0, help="--masking fill: mean fraction of each budget filled")
    p.add_argument("--fill-spread", type=float, default=0.0,
                   help="--masking fill: per-sample fills uniform in fill +- spread/2 (0: every sample alike)")
    p.add_argument("--layout", choices=LAYOUTS, default="static")
    p.add_argument("--pack-rows", type=_rows, default=loader.pack_rows,
                   help="packed rows per batch (--layout packed); auto: the cheapest, as the trainer's default")
    p.add_argument("--pack-multiple", type=int, default=loader.pack_multiple, help="packed row widths round up to this")
    p.add_argument("--compare", action="store_true", help="run every layout of --layouts, fresh process each")
    p.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS), help="what --compare runs")
    p.add_argument("--backend", default="auto", choices=["reference", "sdpa", "triton", "auto"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--optimizer-step", action="store_true", help="include an AdamW step")
    p.add_argument("--fused-loss", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: the trainer's table, egom2p.train.metrics)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also append each result row to this JSON-lines file")
    p.add_argument("--dry-run", action="store_true", help="egom2p-tiny, 64/64 tokens, one step: checks the script runs")
    p.add_argument("--in-process", action="store_true", help="measure here instead of in a fresh process")
    opts = p.parse_args(argv)
    if opts.dry_run:
        opts.preset, opts.enc_tokens, opts.dec_tokens, opts.steps, opts.warmup = "egom2p-tiny", 64, 64, 1, 0
        opts.batch_size, opts.fill, opts.fill_spread = max(opts.batch_size, 2), 0.6, 0.5  # padding exercised
        opts.pack_multiple = min(opts.pack_multiple, 16)
    return opts


def main(argv: list[str] | None = None) -> int:
    """Measure one layout (or ``--compare`` them); rows go to stdout and ``--json``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = parse_args(argv)
    if opts.compare:
        rest = [a for a in argv if a != "--compare"]
        return compare(rest, opts)
    if opts.in_process:
        append_row(opts.json, measure(opts))
        return 0
    print(json.dumps(run_fresh(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
