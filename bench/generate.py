"""Generation throughput: steps/s and generated tokens/s of GenerationSampler.

Cases (released modality set, random weights, batch 1, ROAR, temperature 0.01, top-p 0.8):
  rgb->depth 5120 tokens in 3 steps with CFG 2.0, the same in 25 steps, rgb->cam 30 tokens in 3 steps
  with CFG 2.0. Model egom2p-tiny by default; --base adds egom2p-base (the released size).
Guided steps pack the conditional and unconditional rows (each computes only its own tokens);
--compare also times the unpacked layout (every row padded to the longest, as the original) in the
same run and prints the speed-up.

    python bench/generate.py --quick          # rgb->cam and rgb->depth/3 steps only, one repeat
    python bench/generate.py --base --device cuda
    python bench/generate.py --preset egom2p-base --case 'rgb->cam 3 steps cfg' --repeats 0
    python bench/generate.py --case 'rgb->cam 3 steps cfg' --compare      # packed vs unpacked
"""

from __future__ import annotations

import argparse
import time

import torch
from egom2p.generate import GenerationSampler, build_generation_schedule
from egom2p.model import EgoM2P

CASES = {
    "rgb->depth 3 steps cfg": ("tok_depth", 3, 2.0),
    "rgb->depth 25 steps cfg": ("tok_depth", 25, 2.0),
    "rgb->cam 3 steps cfg": ("tok_cam", 3, 2.0),
}
QUICK = ("rgb->cam 3 steps cfg", "rgb->depth 3 steps cfg")


def bench_case(
    model: EgoM2P, target: str, steps: int, cfg: float, repeats: int, device: str, pack: bool = True
) -> dict[str, float]:
    """Time `repeats` generations after one warm-up; returns the best wall time and the rates.

    `pack`: the sampler's `pack_passes` (guided rows packed, or padded to the longest row)."""
    n = model.modalities[target].num_tokens
    schedule = build_generation_schedule(
        ["tok_rgb"], [target], [n], ["roar"], [steps], ["linear"], [0.01], ["constant"], [cfg], ["constant"], True
    )
    vocab = model.modalities["tok_rgb"].vocab_size
    batch = {"tok_rgb": {"tensor": torch.randint(0, vocab, (1, 5, 32, 32), device=device)}}
    sampler = GenerationSampler(model, pack_passes=pack)
    times = []
    for i in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        sampler.generate(batch, schedule, seed=i, top_p=0.8)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i > 0 or repeats == 0:
            times.append(time.perf_counter() - start)
    best = min(times)
    return {"seconds": best, "steps_per_s": len(schedule) / best, "tokens_per_s": n / best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two cases, no warm-up repeat")
    parser.add_argument("--base", action="store_true", help="also run egom2p-base (slow on CPU)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases (repeatable)")
    parser.add_argument("--preset", action="append", help="run only these presets (repeatable), e.g. egom2p-base")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="also time the unpacked guidance layout, same run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    presets = args.preset or ["egom2p-tiny"] + (["egom2p-base"] if args.base else [])
    cases = args.case or (QUICK if args.quick else tuple(CASES))
    repeats = 0 if args.quick else args.repeats
    print(f"device={args.device} threads={args.threads} repeats={repeats} (best of; one warm-up unless --quick)")
    layouts = ("packed", "unpacked") if args.compare else ("packed",)
    print(f"{'model':<12} {'case':<26} {'layout':<9} {'seconds':>8} {'steps/s':>8} {'tokens/s':>9} {'speed-up':>8}")
    for preset in presets:
        model = EgoM2P.from_preset(preset).to(args.device).eval()
        for case in cases:
            results = {layout: bench_case(model, *CASES[case], repeats=repeats, device=args.device,
                                          pack=layout == "packed") for layout in layouts}
            for layout, r in results.items():
                speedup = results[layouts[-1]]["seconds"] / r["seconds"]
                print(f"{preset:<12} {case:<26} {layout:<9} {r['seconds']:>8.2f} {r['steps_per_s']:>8.2f} "
                      f"{r['tokens_per_s']:>9.1f} {speedup:>7.2f}x")


if __name__ == "__main__":
    main()
