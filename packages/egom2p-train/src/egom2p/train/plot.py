"""``egom2p-train plot RUN_DIR``: the curves of a run's ``metrics.jsonl`` in one PNG (the ``[viz]`` extra).

Six panels against the optimizer step: the loss (training, and each validation set's), the training
loss per modality, the learning rate, the throughput (every ``*tokens_per_s*`` and ``*tok_s`` key the trainer logs, ``valid_tok_s`` included),
the MFU (every ``mfu*`` key; a panel says "not measured" when the run logged none, as on CPU) and the
gradient norm.
matplotlib's object API draws off-screen (Agg): no display and no pyplot state are needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from egom2p.core.errors import MissingExtraError

__all__ = ["plot_run", "read_metrics", "series"]

METRICS_FILE = "metrics.jsonl"


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plots need matplotlib: pip install 'egom2p-train[viz]'") from None
    return Figure


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``. A cut-off last line (a run killed mid-write) is skipped; any other
    unreadable line is a ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (is this a run's output_dir?)")
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise ValueError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise ValueError(f"{path}:{number}: a metrics row needs an integer 'step'")
        rows.append(row)
    return rows


def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key`` over ``rows``, leaving out rows without it and nulls (non-finite values)."""
    points = [(row["step"], float(row[key])) for row in rows if isinstance(row.get(key), (int, float))]
    return [s for s, _ in points], [v for _, v in points]


def _keys(rows: list[dict[str, Any]], keep: Any) -> list[str]:
    found = {key for row in rows for key, value in row.items() if isinstance(value, (int, float)) and keep(key)}
    return sorted(found)


def _panel(ax: Any, rows: list[dict[str, Any]], keys: list[str], title: str, log_y: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel("step")
    drawn = False
    for key in keys:
        steps, values = series(rows, key)
        if steps:
            ax.plot(steps, values, label=key, marker="." if len(steps) < 30 else None)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if log_y and all(v > 0 for key in keys for v in series(rows, key)[1]):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Draw the loss, per-modality loss, LR, tokens/s and MFU curves of ``run_dir/metrics.jsonl`` into a PNG.

    ``out`` defaults to ``run_dir/metrics.png``. Returns the path written. Raises ``FileNotFoundError``
    without a metrics file, ``ValueError`` when it holds no training step, :class:`MissingExtraError`
    without matplotlib.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / METRICS_FILE)
    if not any("loss" in row for row in rows):
        raise ValueError(f"{run_dir / METRICS_FILE}: no training step logged yet")
    figure_class = _figure_class()
    out = Path(out) if out is not None else run_dir / "metrics.png"
    fig = figure_class(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    _panel(axes[0], rows, _keys(rows, lambda k: k == "loss" or (k.startswith("val/") and k.endswith("/loss"))),
           "loss", log_y=True)
    _panel(axes[1], rows, _keys(rows, lambda k: k.endswith("_loss") and "/" not in k), "loss per modality",
           log_y=True)
    _panel(axes[2], rows, _keys(rows, lambda k: k == "lr"), "learning rate")
    _panel(axes[3], rows, _keys(rows, lambda k: "tokens_per_s" in k or k.endswith("tok_s")), "tokens/s")
    _panel(axes[4], rows, _keys(rows, lambda k: k.startswith("mfu")), "MFU")
    _panel(axes[5], rows, _keys(rows, lambda k: k == "grad_norm"), "gradient norm (before clipping)", log_y=True)
    last = max(row["step"] for row in rows)
    fig.suptitle(f"{run_dir.resolve().name}: {last} steps")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
