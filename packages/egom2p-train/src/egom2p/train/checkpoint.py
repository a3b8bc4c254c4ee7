"""Step-directory checkpoints: ``output_dir/checkpoints/step-<N>/``.

Each step directory is an inference artifact and a resume point at once::

    step-<N>/model.safetensors   the trained model's full weights       } egom2p.core.checkpoints'
    step-<N>/config.json         its config (EgoM2PConfig, TokenizerConfig) } write_checkpoint_dir
    step-<N>/train_state.pt      optimizer, scheduler, step, counters, per-rank RNG and loader positions
    step-<N>/adapter.*           with LoRA only: the adapter (egom2p.core.adapters; readers merge it)
    step-<N>/integrity.json      size and sha256 of each file, dtype and shape of each weight (written last)

so every step directory opens with the trained model's ``from_pretrained`` (``EgoM2P``, ``VQVAE``), which
refuses it when it no longer matches ``integrity.json``; resume then falls back to the previous step.
Free disk space for the whole checkpoint is checked before anything is written; running out of it (or of
the file size limit) is a ``DiskFullError`` ("disk full", naming the step directory) and leaves the older
checkpoints as they were.

``train_state.pt`` holds only tensors and plain containers, so it loads with
``torch.load(weights_only=True)``. A checkpoint is written into ``step-<N>.tmp-<pid>/``, every file
fsynced, and the directory renamed to ``step-<N>`` (then its parent fsynced): a crash at any moment
leaves the previous checkpoints intact plus at most a temporary directory, which no reader takes for
a checkpoint (``from_pretrained`` skips it too) and the next start removes. Old checkpoints are
retired the same way (renamed to a temporary name, then deleted). Only rank 0 writes; the caller
gathers per-rank state beforehand.

``save_async`` runs the same ``save`` in one background thread (at most one in flight) on state that
``detached`` has made independent of the live model and optimizer; ``wait`` joins it and re-raises its error.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from egom2p.core.adapters import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, read_adapter, write_adapter
from egom2p.core.checkpoint_layout import TRAIN_STATE_NAME, complete_steps
from egom2p.core.checkpoints import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    fsync_dir,
    step_dir_name,
    verify_checkpoint_dir,
    write_atomic,
    write_checkpoint_dir,
    write_integrity,
)
from egom2p.core.disk_space import disk_full_errors, require_free_space, tensor_bytes
from egom2p.core.errors import DiskFullError
from safetensors.torch import load_file

TEMP_MARK = ".tmp-"  # step-<N>.tmp-<pid>: a save in progress or a retired checkpoint
CHECKPOINT_FILES = (WEIGHTS_NAME, CONFIG_NAME, TRAIN_STATE_NAME)  # what every step directory holds (the S3 upload's files)


Adapter = tuple[dict[str, torch.Tensor], dict[str, Any]]  # a LoRA adapter's tensors and config (egom2p.core.adapters)


class ModelConfig(Protocol):
    """A model's config dataclass (``EgoM2PConfig``, ``TokenizerConfig``): what ``config.json`` holds."""

    def to_dict(self) -> dict[str, Any]: ...


def write_pretrained(directory: Path, state_dict: Mapping[str, torch.Tensor],
                     config: ModelConfig | Mapping[str, Any]) -> None:
    """The inference half of a step directory: ``model.safetensors`` + ``config.json`` (``config.to_dict()``),
    each file written atomically and fsynced (:func:`egom2p.core.checkpoints.write_checkpoint_dir`)."""
    write_checkpoint_dir(directory, state_dict, config if isinstance(config, Mapping) else config.to_dict())


def _retire(path: Path) -> None:
    """Remove a directory so that no moment shows a half-deleted ``step-<N>``: rename first, then delete."""
    doomed = path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-old")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


class CheckpointManager:
    """Saves, lists, prunes and reloads the step directories of one run."""

    def __init__(self, output_dir: str | Path, keep_last_k: int = 3, s3_save_dir: str | None = None,
                 log: Callable[[str], None] = print, upload_retry_seconds: float | None = None):
        if keep_last_k < 1:
            raise ValueError(f"keep_last_k must be >= 1, got {keep_last_k}")
        self.dir = Path(output_dir) / "checkpoints"
        self.keep_last_k = keep_last_k
        self.s3_save_dir = s3_save_dir
        self.log = log
        self.upload_retry_seconds = upload_retry_seconds
        self.pending_uploads: list[Path] = []  # step directories whose upload failed: retried at the next save
        self._writer: threading.Thread | None = None  # the background save in flight (save_async)
        self._writer_error: BaseException | None = None  # its failure, raised by the next wait()

    def list(self) -> list[tuple[int, Path]]:
        """Step directories complete for resuming as ``(step, path)``, oldest first (temporary ones are ignored)."""
        return complete_steps(self.dir, resumable=True)

    def save(self, step: int, model_state: dict[str, torch.Tensor], model_config: ModelConfig | Mapping[str, Any],
             train_state: dict[str, Any], adapter: Adapter | None = None) -> Path:
        """Write the checkpoint of ``step`` atomically, keep the newest K, upload if asked; returns its path.

        Too little disk space, before or while writing, is a ``DiskFullError`` naming the step directory; the
        older checkpoints are left as they were.
        """
        final = self.dir / step_dir_name(step)
        try:
            with disk_full_errors(final):
                require_free_space(self.dir, tensor_bytes(model_state) + tensor_bytes(train_state)
                                   + tensor_bytes(adapter[0] if adapter else {}), f"the checkpoint of step {step}")
                self._write(final, model_state, model_config, train_state, adapter)
        except DiskFullError as err:
            raise DiskFullError(final, f"{err.reason}; not written", "the older checkpoints are intact: make room "
                                "and rerun the same command to resume") from None
        fsync_dir(self.dir)
        for _, old in self.list()[:-self.keep_last_k]:
            _retire(old)
        if self.s3_save_dir:
            self.upload(final)
        return final

    def _write(self, final: Path, model_state: dict[str, torch.Tensor],
               model_config: ModelConfig | Mapping[str, Any], train_state: dict[str, Any],
               adapter: Adapter | None = None) -> None:
        """Write every file into a temporary directory, record them in ``integrity.json``, rename it to ``final``."""
        self.dir.mkdir(parents=True, exist_ok=True)  # a vanished output_dir is found by the run lock's check
        tmp = self.dir / f"{final.name}{TEMP_MARK}{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            write_pretrained(tmp, model_state, model_config)  # each file fsynced
            write_atomic(tmp / TRAIN_STATE_NAME, lambda path: _save_torch(train_state, path))
            extra = [TRAIN_STATE_NAME]
            if adapter is not None:
                write_adapter(tmp, *adapter)
                extra += [ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME]
            write_integrity(tmp, extra, add=True)  # last: the weights and config are recorded already
            fsync_dir(tmp)
            if final.exists():  # the same step saved again (a rerun that ended where it resumed)
                _retire(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save_async(self, step: int, model_state: dict[str, torch.Tensor], model_config: ModelConfig | Mapping[str, Any],
                   train_state: dict[str, Any], adapter: Adapter | None = None) -> None:
        """``save`` in a background thread; returns at once, after waiting for the previous one (``wait``).

        The state must be the writer's alone (see ``detached``). A failure is kept and raised by the next
        ``wait``; a process killed mid-write leaves only the temporary directory that ``remove_temp_dirs`` deletes.
        """
        self.wait()

        def write() -> None:
            start = time.perf_counter()
            try:
                path = self.save(step, model_state, model_config, train_state, adapter)
            except BaseException as err:  # logged now, raised in the caller's thread by the next wait()
                self.log(f"error: the background save of step {step} failed (the older checkpoints are intact): "
                         f"{type(err).__name__}: {err}")
                self._writer_error = err
            else:
                self.log(f"checkpoint {path} written in the background in {time.perf_counter() - start:.1f} s")

        self._writer = threading.Thread(target=write, name=f"checkpoint-{step_dir_name(step)}")
        self._writer.start()

    @property
    def in_flight(self) -> bool:
        """Whether a background save is still writing."""
        return self._writer is not None and self._writer.is_alive()

    def wait(self, reraise: bool = True) -> None:
        """Block until the background save (if any) has finished and raise its error (already logged) if ``reraise``."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        err, self._writer_error = self._writer_error, None
        if err is not None and reraise:
            raise err

    def upload(self, newest: Path) -> list[Path]:
        """Upload ``newest`` and every earlier failed upload still on disk; returns those that failed again.

        Each file is retried on transient S3 errors (``egom2p.core.s3.with_retries``); a failure is logged and
        never raised, so an S3 outage never stops training: the directory is retried at the next save.
        """
        todo = [p for p in self.pending_uploads if p.is_dir() and p != newest] + [newest]
        failed = []
        for path in todo:
            try:
                target = upload_to_s3(path, self.s3_save_dir or "", self.upload_retry_seconds)
            except Exception as err:  # any failure: keep training, try again at the next save
                self.log(f"warning: upload of {path} to {self.s3_save_dir} failed (retried at the next save): "
                         f"{type(err).__name__}: {err}")
                failed.append(path)
            else:
                if path != newest:
                    self.log(f"uploaded {path} to {target} (an earlier upload had failed)")
        self.pending_uploads = failed
        return failed

    def remove_temp_dirs(self) -> list[Path]:
        """Delete what killed saves and prunes left behind; call when no save is in progress (start-up)."""
        if not self.dir.is_dir():
            return []
        stale = [p for p in self.dir.iterdir() if TEMP_MARK in p.name and p.name.startswith("step-")]
        for p in stale:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return stale

    @staticmethod
    def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The model weights (with a LoRA adapter's ``<module>.lora_A/B`` tensors beside them, not merged) and the
        training state of one step directory, checked against its ``integrity.json`` first (a ValueError naming the
        file and what differs)."""
        verify_checkpoint_dir(path)
        weights = load_file(str(path / WEIGHTS_NAME))
        adapter = read_adapter(path)
        if adapter is not None:
            weights.update(adapter[0])
        return weights, torch.load(path / TRAIN_STATE_NAME, map_location="cpu", weights_only=True)

    def load_latest(self) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
        """The newest checkpoint that loads and matches its manifest, or None; any other is reported and skipped."""
        for _, path in reversed(self.list()):
            try:
                return (path, *self.load(path))
            except Exception as err:  # damaged outside our control (disk, copy): try the older one
                print(f"warning: skipping unreadable checkpoint {path}: {err}", file=sys.stderr)
        return None


def _save_torch(state: Any, path: str) -> None:
    # Through a Python file: a failed write then carries its OSError (ENOSPC, EFBIG), which torch's own
    # file writer loses, so that disk_full_errors can recognise it.
    with open(path, "wb") as f:
        torch.save(state, f)


def detached(state: Any, *owners: torch.nn.Module | torch.optim.Optimizer) -> Any:
    """``state`` (nested dicts, lists, tuples) made independent of the live ``owners``, for a background writer.

    Containers are rebuilt and every tensor that shares storage with a parameter, buffer or optimizer state of
    ``owners`` is cloned: ``get_state_dict(cpu_offload=True)`` returns the live tensors themselves for what is
    already on the CPU (all of a CPU run; AdamW's ``step`` counters on GPU runs). Other tensors are kept as they are.
    """
    live = []
    for owner in owners:
        if isinstance(owner, torch.optim.Optimizer):
            live += [t for s in owner.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        else:
            live += owner.state_dict().values()
    shared = {_storage_key(t) for t in live}

    def own(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.clone() if _storage_key(x) in shared else x
        if isinstance(x, dict):
            return {k: own(v) for k, v in x.items()}
        if type(x) in (list, tuple):
            return type(x)(own(v) for v in x)
        return copy.deepcopy(x)  # numbers, strings, arrays (RNG states)

    return own(state)


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    local = t.to_local() if hasattr(t, "to_local") else t  # a DTensor (FSDP2): its local shard
    return str(local.device), local.untyped_storage().data_ptr()


def upload_to_s3(directory: Path, s3_dir: str, retry_seconds: float | None = None) -> str:
    """Upload the files of ``directory`` to ``s3_dir/<dir name>/`` (boto3, default credentials, ``AWS_ENDPOINT_URL``).

    Transient errors are retried for ``retry_seconds`` (default ``$EGOM2P_S3_RETRY_SECONDS``, else 300 s).
    """
    from egom2p.core.s3 import parse_s3_url, s3_client, with_retries  # boto3: the [s3] extra

    bucket, prefix = parse_s3_url(s3_dir.rstrip("/") + "/" + directory.name)
    def put(path: Path, key: str) -> None:
        with path.open("rb") as body:  # reopened per attempt: a retry sends the whole file again
            s3_client().put_object(Bucket=bucket, Key=key, Body=body)

    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        key = f"{prefix}/{path.name}"
        with_retries(f"s3://{bucket}/{key}", lambda p=path, k=key: put(p, k), retry_seconds)
    return f"s3://{bucket}/{prefix}"
