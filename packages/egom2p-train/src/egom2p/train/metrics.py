"""Per-step metrics to ``output_dir/metrics.jsonl``, wandb (rank 0) and a tqdm bar; MFU from a peak table."""

from __future__ import annotations

import json
import math
import netrc
import os
import sys
from pathlib import Path
from typing import Any

import torch
from egom2p.core.progress import LOG_INTERVAL, progress

# Dense bf16/fp16 tensor-core peak FLOP/s per device (vendor datasheets, no sparsity).
PEAK_FLOPS_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # plain "NVIDIA H100 80GB HBM3" is the SXM part
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """Peak FLOP/s of ``device`` for ``dtype``, or None when unknown (CPU, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_FLOPS_BF16.items():  # ordered: specific names before generic ones
        if key in name:
            return flops / 2 if dtype == "float32" else flops  # TF32 runs at half the bf16 rate
    return None


def mfu(flops_per_s_per_device: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation (achieved / peak FLOP/s), or None when the peak is unknown (reported as n/a).

    The trainer passes the FLOPs of ``egom2p.train.throughput`` (computed slots, or valid tokens only).
    """
    if peak is None or flops_per_s_per_device <= 0:
        return None
    return flops_per_s_per_device / peak


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak memory since start, in GiB: allocated accelerator memory on CUDA, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def _wandb_mode() -> str | None:
    """Respect WANDB_MODE; without it and without credentials, go offline rather than ask for a login."""
    if os.environ.get("WANDB_MODE"):
        return None
    if os.environ.get("WANDB_API_KEY"):
        return None
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return None
    except (FileNotFoundError, netrc.NetrcParseError):
        pass
    print("wandb: no credentials found, logging offline (set WANDB_API_KEY or WANDB_MODE)", file=sys.stderr)
    return "offline"


class MetricsLogger:
    """Writes one JSON object per logged step; mirrors it to wandb. Only rank 0 writes anything."""

    def __init__(self, output_dir: str | Path, enabled: bool, log_wandb: bool = False,
                 wandb_project: str | None = None, wandb_entity: str | None = None,
                 wandb_run_name: str | None = None, config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)  # line-buffered: a killed run keeps its lines
        if log_wandb:
            import wandb

            self._wandb = wandb.init(project=wandb_project, entity=wandb_entity, name=wandb_run_name,
                                     config=config, dir=str(output_dir), mode=_wandb_mode(),
                                     resume="allow", id=_run_id(output_dir))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` for ``step``; non-finite floats become null in JSON."""
        if not self.enabled:
            return
        row = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if v is not None and k != "step"}, step=step)

    def close(self) -> None:
        """Flush and close the file and the wandb run."""
        if not self.enabled:
            return
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()


def _run_id(output_dir: str | Path) -> str:
    # Stable per output dir, so a resumed run continues the same wandb run.
    import hashlib

    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ProgressBar:
    """Progress on rank 0, silent elsewhere: a tqdm bar (step, loss, tokens/s, ETA) on a terminal, one plain line every
    ``interval`` seconds and at the last step in a log file (SLURM), :mod:`egom2p.core.progress`."""

    def __init__(self, total: int, initial: int, enabled: bool, interval: float = LOG_INTERVAL):
        self._bar = progress(total=total, initial=initial, desc="train", unit="step", interval=interval,
                             dynamic_ncols=True) if enabled else None

    def update(self, loss: float, tokens_per_s: float) -> None:
        """Advance one step and show the latest numbers."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()

