"""torch.distributed set-up from torchrun's environment; a plain single process works too."""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from egom2p.train.config import ConfigError
from torch import nn

# The original used timedelta(4800) = 4800 *days* (quirk 21, docs/original-behaviour.md#quirks); half an hour
# catches a hung rank.
INIT_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and owns the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group is in use (torchrun with any world size)."""
        return dist.is_available() and dist.is_initialized()


def pick_device(preference: str, local_rank: int) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else CPU."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("config key 'device': 'cuda' was asked for but CUDA is not available on this machine "
                          "(use device=auto or device=cpu)", "device")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group torchrun described (NCCL on CUDA, gloo on CPU), or run alone."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_preference, local_rank)
    if "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=INIT_TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group if one was joined.

    Call it after the DDP/FSDP model is released. A DDP reducer that outlives the group frees it later
    while holding the GIL, and a gloo worker thread still dropping a finished collective's tensors
    needs the GIL: the process hangs at exit (pytorch/pytorch#56297). Destroyed here, the group's own
    destructor releases the GIL first.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # reference cycles that still hold the model, and so the group
        dist.destroy_process_group()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def scatter_objects(objs: list[Any] | None) -> Any:
    """Element ``rank`` of rank 0's list ``objs`` on each rank (``objs[0]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        assert objs is not None
        return objs[0]
    out: list[Any] = [None]
    dist.scatter_object_list(out, objs if dist.get_rank() == 0 else None, src=0)
    return out[0]


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` or ``max``); a no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return tensor


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_replicas_identical(model: nn.Module) -> None:
    """Collective: raise if the data-parallel ranks hold different weights or buffers (DDP must keep them equal).

    Compares a float64 checksum per parameter and buffer (a codebook's EMA state included) across ranks;
    sharded (FSDP) tensors are skipped.
    """
    tensors = [*model.parameters(), *model.buffers()]
    local = torch.stack([t.detach().double().sum() for t in tensors if not hasattr(t, "full_tensor")])
    mine = local.cpu().tolist()
    everyone = gather_objects(mine)
    if any(other != mine for other in everyone):
        raise RuntimeError("data-parallel ranks diverged: their weights differ after training")


def check_on_main(info: DistInfo, check: Callable[[], None]) -> None:
    """Run ``check`` on rank 0 only; every rank raises the ``ConfigError`` it raised (the same one line)."""
    problem = None
    if info.is_main:
        try:
            check()
        except ConfigError as err:
            problem = (str(err), err.key)
    problem = broadcast_object(problem)
    if problem is not None:
        raise ConfigError(*problem)
