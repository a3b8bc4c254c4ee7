"""Token-level evaluation tasks with the original eval scripts' settings (SPEC 7.4).

The original scripts only write outputs; here each task generates the target from the
conditioning of every sample and reports token accuracy against the true tokens. Without the
Cosmos / VQ-VAE tokenizers (not part of this project) metrics stay at token level: camera ATE/RTE
or depth errors would need the decoded signals.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from egom2p.core.modalities import ModalitySpec
from egom2p.model import EgoM2P

from .sampler import GenerationSampler
from .schedule import build_generation_schedule
from .shards import iter_samples


@dataclass(frozen=True)
class EvalTask:
    """One conditioning -> target task and its original number of ROAR steps."""

    cond: str
    target: str
    steps: int


TASKS: dict[str, EvalTask] = {
    "rgb2depth": EvalTask("tok_rgb", "tok_depth", 3),
    "rgb2cam": EvalTask("tok_rgb", "tok_cam", 3),
    "rgb2gaze": EvalTask("tok_rgb", "tok_gaze", 5),
    "depth2rgb": EvalTask("tok_depth", "tok_rgb", 6),
}

# The released eval scripts' settings (ROAR, temperature 0.01 constant, top-p 0.8, CFG 2.0 with
# growing conditioning, seed 0).
DEFAULTS: dict[str, Any] = {
    "scheme": "roar",
    "temperature": 0.01,
    "top_k": 0.0,
    "top_p": 0.8,
    "cfg_scale": 2.0,
    "seed": 0,
}


def load_samples(
    data: str | Path | Iterable[Mapping[str, np.ndarray]],
    modalities: Mapping[str, ModalitySpec],
    dataset: str | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Samples as `{modality name: token array}` from a pattern, a root + dataset, or an iterable.

    A string with a `[folder,...]` list is a shard pattern; otherwise `data` is a root directory and
    `dataset` names the folder under each modality folder (see `egom2p.generate.shards`). An
    iterable of dicts is passed through (keys may be modality names or folder names).
    """
    by_folder = {spec.folder: name for name, spec in modalities.items()}
    if isinstance(data, (str, Path)):
        samples: Iterable[Mapping[str, np.ndarray]] = (
            arrays for _, arrays in iter_samples(data, list(by_folder), dataset)
        )
    else:
        samples = data
    for sample in samples:
        yield {by_folder.get(key, key): np.asarray(value) for key, value in sample.items()}


def run_eval_task(
    model: EgoM2P,
    data: str | Path | Iterable[Mapping[str, np.ndarray]],
    task: str,
    max_samples: int | None = None,
    dataset: str | None = None,
    batch_size: int = 1,
    steps: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Generate `task`'s target for each sample and measure token accuracy.

    `task` is one of TASKS; `overrides` may change any of DEFAULTS (scheme, temperature, top_k,
    top_p, cfg_scale, seed). Samples lacking the conditioning or the target modality are skipped
    and counted. Every batch uses the same seed, as the original scripts seed each file with 0.
    Returns `{task, accuracy, n_tokens, n_correct, n_samples, n_skipped, seconds}`.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown eval settings {unknown}; known: {sorted(DEFAULTS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    settings = {**DEFAULTS, **overrides}
    spec = TASKS[task]
    modalities = model.modalities
    for name in (spec.cond, spec.target):
        if name not in modalities:
            raise ValueError(f"task {task!r} needs modality {name!r}, which this checkpoint lacks")
    n_target = modalities[spec.target].num_tokens
    n_cond = modalities[spec.cond].num_tokens
    schedule = build_generation_schedule(
        cond_domains=[spec.cond], target_domains=[spec.target], tokens_per_target=[n_target],
        autoregression_schemes=[settings["scheme"]], decoding_steps=[steps or spec.steps],
        token_decoding_schedules=["linear"], temps=[settings["temperature"]], temp_schedules=["constant"],
        cfg_scales=[settings["cfg_scale"]], cfg_schedules=["constant"], cfg_grow_conditioning=True,
    )  # fmt: skip
    sampler = GenerationSampler(model)
    counts = {"n_tokens": 0, "n_correct": 0, "n_samples": 0, "n_skipped": 0}
    start = time.perf_counter()

    def run(conds: list[np.ndarray], truths: list[np.ndarray]) -> None:
        tokens = torch.as_tensor(np.stack(conds)).long()
        out = sampler.generate(
            {spec.cond: {"tensor": tokens}}, schedule,
            seed=settings["seed"], top_k=settings["top_k"], top_p=settings["top_p"],
        )  # fmt: skip
        generated = out[spec.target]["tensor"].reshape(len(conds), -1).cpu().numpy()
        truth = np.stack(truths)
        counts["n_correct"] += int((generated == truth).sum())
        counts["n_tokens"] += int(truth.size)
        counts["n_samples"] += len(conds)

    conds, truths = [], []
    for sample in load_samples(data, modalities, dataset):
        if max_samples is not None and counts["n_samples"] + len(conds) >= max_samples:
            break
        if spec.cond not in sample or spec.target not in sample:
            counts["n_skipped"] += 1
            continue
        cond, truth = sample[spec.cond].reshape(-1), sample[spec.target].reshape(-1)
        if cond.size != n_cond or truth.size != n_target:
            raise ValueError(
                f"sample has {cond.size} {spec.cond} / {truth.size} {spec.target} tokens; "
                f"the checkpoint expects {n_cond} / {n_target}"
            )
        conds.append(cond)
        truths.append(truth)
        if len(conds) == batch_size:
            run(conds, truths)
            conds, truths = [], []
    if conds:
        run(conds, truths)
    accuracy = counts["n_correct"] / counts["n_tokens"] if counts["n_tokens"] else float("nan")
    return {"task": task, "accuracy": accuracy, **counts, "seconds": time.perf_counter() - start}
