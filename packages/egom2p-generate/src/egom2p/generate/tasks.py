"""Conditioning -> target tasks with the original eval scripts' settings, and their token accuracy.

The original's scripts and settings: docs/original-behaviour.md#evaluation-scripts.

The original scripts only write outputs; here each task generates the target from the
conditioning of every sample (:class:`TaskRunner`, shared with batch inference in
:mod:`egom2p.generate.infer`) and reports token accuracy against the true tokens. The camera and gaze errors of the decoded
signals are :mod:`egom2p.generate.signal_eval`'s, an ``on_batch`` callback of :func:`run_eval_task`
(the video modalities' Cosmos tokenizer is not part of this project, so depth errors are not computed).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from egom2p.core.layout import folder_modalities
from egom2p.core.modalities import ModalitySpec
from egom2p.core.progress import progress as progress_bar
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

OTHER_TASK_STEPS = 3  # decoding steps of a task between other modalities (a new one, docs/new-modality.md)


def task_spec(name: str) -> EvalTask:
    """The task ``name``: one of :data:`TASKS`, or ``<cond>2<target>`` between any two modalities ``tok_<cond>`` and
    ``tok_<target>`` (``rgb2hand``: tok_rgb -> tok_hand) with :data:`OTHER_TASK_STEPS` steps. A ValueError for a
    name of neither form; whether the checkpoint has the modalities is :class:`TaskRunner`'s to say."""
    if name in TASKS:
        return TASKS[name]
    cond, sep, target = name.partition("2")
    if not sep or not cond or not target or cond == target or not all(c.isalnum() or c == "_" for c in cond + target):
        raise ValueError(f"unknown task {name!r}: one of {sorted(TASKS)} or <cond>2<target> (e.g. rgb2hand for "
                         "tok_rgb -> tok_hand)")
    return EvalTask(f"tok_{cond}", f"tok_{target}", OTHER_TASK_STEPS)


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

# A batch's outputs as eval callbacks see them: sample keys, true [b, N] and generated [b, N] target tokens.
BatchCallback = Callable[[list[str], np.ndarray, np.ndarray], None]


class TaskRunner:
    """A task's schedule and sampler, ready to generate the target for batches of conditioning tokens.

    ``steps`` overrides the task's decoding steps; ``overrides`` may change any of DEFAULTS. A
    requested setting the model cannot honour is clamped with a ``UserWarning`` (more steps than
    the target has tokens; a top-k larger than its vocabulary). Every batch uses the same seed, as
    the original scripts seed each file with 0.
    """

    def __init__(self, model: EgoM2P, task: str, steps: int | None = None, **overrides: Any) -> None:
        spec = task_spec(task)
        unknown = sorted(set(overrides) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown eval settings {unknown}; known: {sorted(DEFAULTS)}")
        self.task, self.spec = task, spec
        self.settings = {**DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
        modalities = model.modalities
        for name in (self.spec.cond, self.spec.target):
            if name not in modalities:
                raise ValueError(f"task {task!r} needs modality {name!r}, which this checkpoint lacks")
        self.cond_spec: ModalitySpec = modalities[self.spec.cond]
        self.target_spec: ModalitySpec = modalities[self.spec.target]
        n_target = self.target_spec.num_tokens
        steps = steps or self.spec.steps
        self.schedule = build_generation_schedule(
            cond_domains=[self.spec.cond], target_domains=[self.spec.target], tokens_per_target=[n_target],
            autoregression_schemes=[self.settings["scheme"]], decoding_steps=[steps],
            token_decoding_schedules=["linear"], temps=[self.settings["temperature"]], temp_schedules=["constant"],
            cfg_scales=[self.settings["cfg_scale"]], cfg_schedules=["constant"], cfg_grow_conditioning=True,
        )  # fmt: skip
        warn_clamped(self.schedule, {self.spec.target: steps}, {self.spec.target: self.target_spec}, self.settings["top_k"])
        self.sampler = GenerationSampler(model)

    def predict(self, conds: np.ndarray) -> np.ndarray:
        """Generated target tokens ``[b, N_target]`` (int64) for conditioning tokens ``[b, *shape]``."""
        n_cond = self.cond_spec.num_tokens
        if conds.ndim < 2 or conds[0].size != n_cond:
            raise ValueError(f"{self.spec.cond} samples have {conds[0].size if conds.ndim else conds.size} tokens; "
                             f"the checkpoint expects {n_cond}")
        out = self.sampler.generate(
            {self.spec.cond: {"tensor": torch.as_tensor(conds.reshape(len(conds), n_cond)).long()}}, self.schedule,
            seed=self.settings["seed"], top_k=self.settings["top_k"], top_p=self.settings["top_p"],
        )  # fmt: skip
        return out[self.spec.target]["tensor"].reshape(len(conds), -1).cpu().numpy()


def warn_clamped(
    schedule: list[dict[str, Any]],
    requested_steps: Mapping[str, int],
    specs: Mapping[str, ModalitySpec],
    top_k: float = 0.0,
) -> None:
    """``UserWarning`` for each setting the schedule or the sampler clamps: more decoding steps than a
    target has tokens, and an integer top-k above a target's vocabulary."""
    for target, requested in requested_steps.items():
        used = sum(1 for step in schedule if step["target_domain"] == target)
        if used < requested:
            warnings.warn(f"{requested} decoding steps requested for {target}, which has {specs[target].num_tokens} "
                          f"tokens: {used} steps run", UserWarning, stacklevel=3)
        vocab = specs[target].vocab_size
        if isinstance(top_k, int) and top_k > vocab:
            warnings.warn(f"top-k {top_k} is above the vocabulary of {target} ({vocab}): all {vocab} tokens are kept",
                          UserWarning, stacklevel=3)


def load_samples(
    data: str | Path | Iterable[Mapping[str, np.ndarray]],
    modalities: Mapping[str, ModalitySpec],
    dataset: str | None = None,
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """``(key, {modality name: token array})`` from a pattern, a root + dataset, or an iterable of dicts.

    A string with a ``[folder,...]`` list is a shard pattern (local or ``s3://``); otherwise ``data`` is a
    root directory and ``dataset`` names the folder under each modality folder (see
    :mod:`egom2p.generate.shards`). An iterable of dicts is passed through (keys may be modality names
    or folder names; sample keys are ``sample-<i>``).
    """
    by_folder = folder_modalities(modalities, modalities)  # core's folder -> modality rule
    if isinstance(data, (str, Path)):
        keyed: Iterable[tuple[str, Mapping[str, np.ndarray]]] = iter_samples(data, list(by_folder), dataset)
    else:
        keyed = ((f"sample-{i}", sample) for i, sample in enumerate(data))
    for key, sample in keyed:
        yield key, {by_folder.get(name, name): np.asarray(value) for name, value in sample.items()}


def run_eval_task(
    model: EgoM2P,
    data: str | Path | Iterable[Mapping[str, np.ndarray]],
    task: str,
    max_samples: int | None = None,
    dataset: str | None = None,
    batch_size: int = 1,
    steps: int | None = None,
    on_batch: BatchCallback | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Generate `task`'s target for each sample and measure token accuracy.

    `task` is one of TASKS or ``<cond>2<target>`` (:func:`task_spec`); `overrides` may change any of DEFAULTS (scheme, temperature, top_k,
    top_p, cfg_scale, seed). Samples lacking the conditioning or the target modality are skipped
    and counted. `on_batch(keys, truth, generated)` sees every batch (e.g. to draw figures).
    `progress`: None (the default) a bar on a terminal and periodic lines in a log (:mod:`egom2p.core.progress`),
    True the bar, False nothing.
    Returns `{task, accuracy, n_tokens, n_correct, n_samples, n_skipped, seconds}`; `accuracy` is None
    when no sample had both modalities.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    runner = TaskRunner(model, task, steps, **overrides)
    cond, target = runner.spec.cond, runner.spec.target
    n_cond, n_target = runner.cond_spec.num_tokens, runner.target_spec.num_tokens
    counts = {"n_tokens": 0, "n_correct": 0, "n_samples": 0, "n_skipped": 0}
    start = time.perf_counter()

    def usable() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for key, sample in load_samples(data, model.modalities, dataset):
            if cond not in sample or target not in sample:
                counts["n_skipped"] += 1
                continue
            given, truth = sample[cond].reshape(-1), sample[target].reshape(-1)
            if given.size != n_cond or truth.size != n_target:
                raise ValueError(f"sample {key} has {given.size} {cond} / {truth.size} {target} tokens; "
                                 f"the checkpoint expects {n_cond} / {n_target}")
            yield key, given, truth

    samples = islice(usable(), max_samples)
    with progress_bar(total=max_samples, desc=task, unit="sample", enabled=progress, leave=False) as bar:
        while batch := list(islice(samples, batch_size)):
            keys, conds, truths = zip(*batch)
            generated, truth = runner.predict(np.stack(conds)), np.stack(truths)
            counts["n_correct"] += int((generated == truth).sum())
            counts["n_tokens"] += int(truth.size)
            counts["n_samples"] += len(batch)
            if on_batch is not None:
                on_batch(list(keys), truth, generated)
            bar.update(len(batch))
    accuracy = counts["n_correct"] / counts["n_tokens"] if counts["n_tokens"] else None
    return {"task": task, "accuracy": accuracy, **counts, "seconds": time.perf_counter() - start}
