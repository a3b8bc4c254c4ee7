"""Packing efficiency (valid / computed slots) at the released masking: budgets 2048 / 2048, egom2p modalities,
the alphas mix_mod4_all2all_uni; unpacked (one row per sample, budget wide), trimmed (rows cut to the
fullest sample of the batch) and packed (egom2p.data.packing.pack_batch, num_rows=1, multiple=256).

usage: python bench/packing.py [BATCHES]   (default 200; run from the repository root)
"""

from __future__ import annotations

import sys

import torch
from egom2p.core.modalities import load_modality_specs
from egom2p.core.packing import kept_tokens
from egom2p.data.masking import UnifiedMasking
from egom2p.data.packing import pack_batch

specs = load_modality_specs("egom2p")
masking = UnifiedMasking.from_config(specs, list(specs), list(specs), 2048, 2048,
                                     alphas_config="mix_mod4_all2all_uni")
batches = int(sys.argv[1]) if len(sys.argv) > 1 else 200
gen = torch.Generator().manual_seed(0)
print(f"{'per GPU':>8} {'unpacked':>9} {'trimmed':>8} {'packed':>7}  (valid / computed slots, encoder + decoder, {batches} batches)")
for size in (4, 8, 16, 32):
    tensors = {n: torch.zeros(size, s.num_tokens, dtype=torch.int64) for n, s in specs.items()}
    valid = trimmed = packed_slots = 0
    for _ in range(batches):
        batch = masking.mask_batch(tensors, gen)
        n_in = kept_tokens({n: d["input_mask"] for n, d in batch.items()}, 2048).sum(1)
        n_tg = kept_tokens({n: d["target_mask"] for n, d in batch.items()}, 2048).sum(1)
        valid += int(n_in.sum() + n_tg.sum())
        trimmed += size * int(n_in.max() + n_tg.max())
        p = pack_batch(batch, 2048, 2048, num_rows=1, multiple=256)
        packed_slots += sum(p.slots)
    print(f"{size:>8} {valid / (batches * size * 4096):>9.1%} {valid / trimmed:>8.1%} {valid / packed_slots:>7.1%}")
