"""Pictures of generated vs true tokens (the ``[viz]`` extra: matplotlib, drawn off-screen with Agg).

A video modality (``[T, H, W]`` grid) is drawn as two rows of token-id images, one column per
frame: the true tokens, then the generated ones with every wrong token marked by a red cross. A
sequence modality (camera, gaze: ``[L]``) is drawn as true and generated token ids per position,
wrong positions marked. Token ids are categories, so the colours only show where ids agree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from egom2p.core.errors import MissingExtraError
from egom2p.core.modalities import ModalitySpec

__all__ = ["require_matplotlib", "save_token_figure"]


def require_matplotlib() -> Any:
    """matplotlib's ``Figure`` class (the object API: no pyplot, no GUI backend, Agg on savefig), or
    :class:`MissingExtraError` saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("figures need matplotlib: pip install 'egom2p-generate[viz]'") from None
    return Figure


def _figure(**kwargs: Any) -> Any:
    return require_matplotlib()(**kwargs)


def save_token_figure(
    path: str | os.PathLike, spec: ModalitySpec, truth: np.ndarray, generated: np.ndarray, title: str = ""
) -> Path:
    """Draw ``truth`` vs ``generated`` tokens of one sample of ``spec`` into the PNG ``path``; returns it."""
    truth, generated = np.asarray(truth).reshape(spec.shape), np.asarray(generated).reshape(spec.shape)
    wrong = truth != generated
    heading = f"{title}  {spec.name}: {int(wrong.sum())} of {wrong.size} tokens wrong".strip()
    if spec.is_video:
        frames = spec.shape[0]
        fig = _figure(figsize=(2.2 * frames + 0.8, 5.0), layout="constrained")
        axes = fig.subplots(2, frames, squeeze=False)
        for t in range(frames):
            for row, (label, tokens) in enumerate((("true", truth), ("generated", generated))):
                ax = axes[row, t]
                ax.imshow(tokens[t], cmap="viridis", vmin=0, vmax=spec.vocab_size - 1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if t == 0:
                    ax.set_ylabel(label)
                if row == 0:
                    ax.set_title(f"frame {t}")
            ys, xs = np.nonzero(wrong[t])
            axes[1, t].scatter(xs, ys, marker="x", c="red", s=12, linewidths=1.0)
    else:
        fig = _figure(figsize=(9.0, 3.5), layout="constrained")
        ax = fig.subplots()
        positions = np.arange(truth.size)
        ax.step(positions, truth, where="mid", label="true", color="tab:blue")
        ax.step(positions, generated, where="mid", label="generated", color="tab:orange", linestyle="--")
        ax.scatter(positions[wrong], generated[wrong], marker="x", c="red", zorder=3, label="wrong")
        ax.set_xlabel("token position")
        ax.set_ylabel(f"token id (vocabulary {spec.vocab_size})")
        ax.legend(loc="upper right", fontsize="small")
    fig.suptitle(heading)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
