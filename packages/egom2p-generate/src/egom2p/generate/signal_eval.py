"""``egom2p-eval``'s signal metrics: the paper's camera and gaze errors on decoded tokens.

The held-out tokens are the ground truth: the generated and the true tokens of every sample are decoded
with the same tokenizer and compared with :mod:`egom2p.tokenizers.metrics` (camera: ATE after the
original's alignment and after SE(3) / Sim(3) alignment, unaligned ATE, RTE, RRE; gaze: the original's
MSE in crop units and the error in crop pixels). A perfect prediction therefore scores 0 whatever the
tokenizer's own reconstruction error is. Results are the mean and the median over samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .signals import SignalDecoder, require_tokenizers

GT_SOURCE = "decoded tokens"  # what the metrics compare against, stated in every report


def aggregate_metrics(per_sample: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """``{"mean": {metric: value}, "median": {...}}`` over samples.

    A NaN (e.g. a gaze window without a valid ground-truth frame) leaves that sample out of that metric;
    a metric no sample has a value for is None.
    """
    names = list(dict.fromkeys(name for sample in per_sample for name in sample))
    summary: dict[str, dict[str, float | None]] = {"mean": {}, "median": {}}
    for name in names:
        values = np.array([sample[name] for sample in per_sample if name in sample], dtype=np.float64)
        values = values[~np.isnan(values)]
        summary["mean"][name] = float(values.mean()) if values.size else None
        summary["median"][name] = float(np.median(values)) if values.size else None
    return summary


def sample_metrics(decoder: SignalDecoder, modality: str, pred: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """One dict of metrics per sample for decoded signals ``pred`` and ``truth`` (``decoder.decode``'s output)."""
    metrics = require_tokenizers("metrics")
    if modality == "tok_cam":
        per_window = metrics.camera_metrics_per_window(pred, truth)
        return [{name: float(values[i]) for name, values in per_window.items()} for i in range(len(pred))]
    return [metrics.gaze_metrics(p, t, decoder.gaze_frame) for p, t in zip(pred, truth)]


class SignalScorer:
    """An ``on_batch`` callback of :func:`egom2p.generate.tasks.run_eval_task`: decodes the generated and the
    true target tokens of every batch, keeps each sample's metrics and draws the first ``max_figures``
    samples into ``figures/<task>/<key>_signals.png`` (``figures`` None: no pictures)."""

    def __init__(self, decoder: SignalDecoder, modality: str, task: str, figures: Path | None = None,
                 max_figures: int = 8) -> None:
        self.decoder, self.modality, self.task = decoder, modality, task
        self.figures, self.max_figures = figures, max_figures
        self.per_sample: list[dict[str, float]] = []
        self.drawn: list[Path] = []

    def __call__(self, keys: list[str], truth: np.ndarray, generated: np.ndarray) -> None:
        both = self.decoder.decode(self.modality, np.concatenate([generated, truth]))  # one tokenizer pass
        pred, true = both[: len(generated)], both[len(generated):]
        scores = sample_metrics(self.decoder, self.modality, pred, true)
        self.per_sample += scores
        if self.figures is not None:
            for key, p, t, score in zip(keys, pred, true, scores):
                if len(self.drawn) < self.max_figures:
                    self.drawn.append(self._draw(key, p, t, score))

    def _draw(self, key: str, pred: np.ndarray, truth: np.ndarray, score: Mapping[str, float]) -> Path:
        from .signal_figures import save_camera_figure, save_gaze_figure

        path = self.figures / self.task / f"{key}_signals.png"
        if self.modality == "tok_cam":
            title = f"{self.task} {key}: ATE (SE(3)) {score['ate_se3_m']:.4f} m, RRE {score['rre_deg']:.2f} deg"
            return save_camera_figure(path, truth, pred, title)
        gaze = require_tokenizers("gaze")
        frame = self.decoder.gaze_frame
        crop_px = lambda pixels: gaze.pixels_to_crop_units(pixels, frame) * np.array(frame.crop)  # noqa: E731
        error = score["gaze_error_crop_px"]
        title = f"{self.task} {key}: gaze error {'-' if math.isnan(error) else format(error, '.1f')} crop px"
        return save_gaze_figure(path, crop_px(truth), crop_px(pred), frame.crop, title)

    def summary(self) -> dict[str, Any]:
        """``{gt, tokenizer, n_samples, mean, median}``: what the metrics compare, and their aggregates."""
        source = f"{self.modality}={self.decoder.sources[self.modality]}"
        return {"gt": GT_SOURCE, "tokenizer": source, "n_samples": len(self.per_sample),
                **aggregate_metrics(self.per_sample)}
