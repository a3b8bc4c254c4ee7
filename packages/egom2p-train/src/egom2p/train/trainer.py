"""The training loop: accumulation, clipping, skipping bad steps, checkpoints, validation, metrics.

``Trainer`` takes ready-made pieces (model, loaders) so that it can be tested with small fakes;
``run_training`` builds those pieces from a ``TrainConfig`` (the console script's path).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from egom2p.train import distributed as D
from egom2p.train.checkpoint import CheckpointManager
from egom2p.train.config import ConfigError, TrainConfig, save_resolved_config
from egom2p.train.faults import BadStepGuard, NonFiniteStepError, StopRequest
from egom2p.train.metrics import MetricsLogger, ProgressBar, mfu, peak_flops, peak_memory_gib
from egom2p.train.optim import build_optimizer
from egom2p.train.parallel import parallelize
from egom2p.train.rng import capture_rng_state, restore_rng_state, seed_everything
from egom2p.train.schedule import Schedule, derive_schedule
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

Batch = dict[str, dict[str, torch.Tensor]]
_FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)


class TrainLoader(Protocol):
    """What the trainer needs from ``egom2p.data.build_train_loader`` (docs/contracts.md)."""

    stats: Mapping[str, Any]

    def __iter__(self): ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def move_batch(batch: Mapping[str, Mapping[str, Any]], device: torch.device) -> Batch:
    """Tensors of the batch dict on ``device``; non-tensor entries are dropped."""
    return {mod: {k: v.to(device, non_blocking=True) for k, v in d.items() if isinstance(v, torch.Tensor)}
            for mod, d in batch.items()}


def autocast_context(device: torch.device, dtype: str):
    """bf16/fp16 autocast over fp32 weights; float32 runs without autocast."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


class Trainer:
    """Runs optimizer steps from ``step`` to the end of the run on one rank."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, train_loader: TrainLoader, info: D.DistInfo,
                 val_loaders: Callable[[], Mapping[str, Iterable]] | None = None, log: Callable[[str], None] = print):
        self.cfg, self.info, self.log = cfg, info, log
        self.schedule: Schedule = derive_schedule(cfg, info.world_size)
        self.bare_model = model.to(info.device)
        self.num_params = sum(p.numel() for p in self.bare_model.parameters() if p.requires_grad)
        self.model = parallelize(self.bare_model, info, fsdp=cfg.fsdp, compile=cfg.compile,
                                 activation_checkpointing=cfg.activation_checkpointing)
        self.optimizer = build_optimizer(self.bare_model, self.schedule.peak_lr, cfg.weight_decay, cfg.opt_betas, cfg.opt_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule.lr_lambda)
        self.train_loader, self.val_loaders = train_loader, val_loaders
        self.guard = BadStepGuard(cfg.max_bad_steps)
        self.checkpoints = CheckpointManager(cfg.output_dir, cfg.keep_last_k, cfg.s3_save_dir)
        self.step = 0
        self.end_step = min(self.schedule.total_steps, cfg.max_steps or self.schedule.total_steps)
        spe = self.schedule.steps_per_epoch
        self.ckpt_every = cfg.checkpoint_every_steps or cfg.save_ckpt_freq * spe
        self.val_every = cfg.val_every_steps or cfg.eval_freq * spe
        self._iter = None
        self._bad_batches: list[Batch] = []

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; a collective call (every rank must call it)."""
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=_FULL_STATE)
        return {
            "step": self.step,
            "world_size": self.info.world_size,
            "model": model_sd,
            "optimizer": optim_sd,
            "scheduler": self.scheduler.state_dict(),
            "guard": self.guard.state_dict(),
            "rng": D.gather_objects(capture_rng_state()),  # per rank, in rank order
            "data": D.gather_objects(self.train_loader.state_dict()),
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; per-rank RNG and data positions need the same world size."""
        set_model_state_dict(self.model, state["model"], options=StateDictOptions(full_state_dict=True))
        # Not strict: a parameter that never received a gradient (an unused modality) has no AdamW state yet.
        set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True, strict=False))
        self.scheduler.load_state_dict(state["scheduler"])
        self.guard.load_state_dict(state["guard"])
        self.step = state["step"]
        if state["world_size"] == self.info.world_size:
            restore_rng_state(state["rng"][self.info.rank])
            self.train_loader.load_state_dict(state["data"][self.info.rank])
        else:
            self.log(f"warning: checkpoint was written with world size {state['world_size']}, now "
                     f"{self.info.world_size}: data streams and RNG restart (reseeded with the step)")
            seed_everything(self.cfg.seed + self.info.rank + 1_000_003 * self.step)

    def save_checkpoint(self) -> Path | None:
        """Collective: gather state, rank 0 writes it atomically. Returns the path on rank 0."""
        state = self.state_dict()
        path = self.checkpoints.save(self.step, state) if self.info.is_main else None
        D.barrier()
        return path

    def try_resume(self) -> Path | None:
        """Load the newest complete checkpoint (rank 0 chooses), if any."""
        found = self.checkpoints.load_latest()
        chosen = D.gather_objects(str(found[0]) if found else None)[0]
        if chosen is None:
            return None
        if found is None or str(found[0]) != chosen:  # this rank saw another file: read rank 0's choice
            found = (Path(chosen), torch.load(chosen, map_location="cpu", weights_only=False))
        self.load_state_dict(found[1])
        return Path(chosen)

    # ------------------------------------------------------------------ one step
    def _next_batch(self) -> Batch:
        if self._iter is None:
            self._iter = iter(self.train_loader)
        return move_batch(next(self._iter), self.info.device)

    def train_step(self, stop: StopRequest | None = None) -> dict[str, Any]:
        """One optimizer step over ``accum_iter`` micro-batches; skips the update if anything is non-finite."""
        cfg, model = self.cfg, self.model
        model.train()
        losses, mod_sums, bad_local = [], {}, False
        self._bad_batches = []
        for micro in range(cfg.accum_iter):
            batch = self._next_batch()
            last = micro == cfg.accum_iter - 1
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast_context(self.info.device, cfg.dtype):
                    out = model(batch, num_encoder_tokens=cfg.num_input_tokens,
                                num_decoder_tokens=cfg.num_target_tokens, loss_type=cfg.loss_type)
                (out.loss / cfg.accum_iter).backward()
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                bad_local = True
                self._bad_batches.append({k: {n: t.cpu() for n, t in v.items()} for k, v in batch.items()})
            losses.append(loss)
            for name, value in out.mod_loss.items():
                mod_sums[name] = mod_sums.get(name, 0.0) + float(value.detach()) / cfg.accum_iter
        clip = cfg.clip_grad if cfg.clip_grad is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor
            grad_norm = grad_norm.full_tensor()
        grad_norm = float(grad_norm)
        # One small all-reduce makes every rank agree on skipping and stopping.
        flags = torch.tensor([float(bad_local or not math.isfinite(grad_norm)),
                              float(stop is not None and stop.requested is not None)])
        D.all_reduce(flags, "max")
        lr = self.optimizer.param_groups[0]["lr"]
        try:
            skipped = self.guard.record(finite=flags[0].item() == 0)
        except NonFiniteStepError:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        if not skipped:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return {"loss": sum(losses) / len(losses), "mod_loss": mod_sums, "grad_norm": grad_norm, "lr": lr,
                "skipped": skipped, "stop": bool(flags[1].item())}

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss (and per-modality loss) per validation dataset, averaged over ranks."""
        if self.val_loaders is None:
            return {}
        self.model.eval()
        names = sorted(getattr(self.bare_model, "modalities", {}))
        metrics: dict[str, float] = {}
        for dataset, loader in self.val_loaders().items():
            # sums: [loss, batches, then per modality: loss sum, batches with that modality]
            sums = torch.zeros(2 + 2 * len(names), dtype=torch.float64)
            for batch in loader:
                with autocast_context(self.info.device, self.cfg.dtype):
                    out = self.model(move_batch(batch, self.info.device), num_encoder_tokens=self.cfg.num_input_tokens,
                                     num_decoder_tokens=self.cfg.num_target_tokens, loss_type=self.cfg.loss_type)
                sums[0] += float(out.loss)
                sums[1] += 1
                for i, name in enumerate(names):
                    if out.num_targets.get(name, 0) > 0:
                        sums[2 + 2 * i] += float(out.mod_loss[name])
                        sums[3 + 2 * i] += 1
            D.all_reduce(sums)
            if sums[1] > 0:
                metrics[f"val/{dataset}/loss"] = float(sums[0] / sums[1])
            for i, name in enumerate(names):
                if sums[3 + 2 * i] > 0:
                    metrics[f"val/{dataset}/{name}_loss"] = float(sums[2 + 2 * i] / sums[3 + 2 * i])
        self.model.train()
        return metrics

    # ------------------------------------------------------------------ the loop
    def _save_debug_batch(self, error: Exception) -> Path:
        everyone = D.gather_objects(self._bad_batches)
        path = Path(self.cfg.output_dir) / "debug_batch.pt"
        if self.info.is_main:
            torch.save({"step": self.step, "error": str(error), "batches_per_rank": everyone}, path)
        return path

    def fit(self) -> dict[str, Any]:
        """Train until ``end_step`` (or a stop request); returns the last logged metrics."""
        cfg, sched, info = self.cfg, self.schedule, self.info
        logger = MetricsLogger(cfg.output_dir, info.is_main, cfg.log_wandb, cfg.wandb_project, cfg.wandb_entity,
                               cfg.wandb_run_name, cfg.to_dict())
        bar = ProgressBar(self.end_step, self.step, info.is_main)
        stop = StopRequest()
        peak = peak_flops(info.device, cfg.dtype)
        flops = getattr(self.bare_model, "flops_per_sample", None)
        flops_per_sample = flops(cfg.num_input_tokens, cfg.num_target_tokens) if callable(flops) else 0.0
        tokens_per_step = sched.global_batch * sched.tokens_per_sample
        last: dict[str, Any] = {}
        window_start, window_steps = time.perf_counter(), 0
        saved_at = self.step
        try:
            while self.step < self.end_step:
                try:
                    result = self.train_step(stop)
                except NonFiniteStepError as err:
                    path = self._save_debug_batch(err)
                    raise NonFiniteStepError(f"{err} at step {self.step}; offending batches saved to {path}") from None
                window_steps += 1
                elapsed = time.perf_counter() - window_start
                tok_s = tokens_per_step * window_steps / max(elapsed, 1e-9)
                bar.update(result["loss"], tok_s)
                if self.step % cfg.log_every_steps == 0 or self.step == self.end_step:
                    last = self._log_metrics(logger, result, tok_s, flops_per_sample, peak)
                    window_start, window_steps = time.perf_counter(), 0
                if self.step % self.val_every == 0 and self.val_loaders is not None:
                    val = self.validate()
                    logger.log(self.step, val)
                    last.update(val)
                if result["stop"]:
                    path = self.save_checkpoint()
                    self.log(f"stop requested ({stop.requested or 'by another rank'}): checkpoint "
                             f"{path or ''} written at step {self.step}, exiting")
                    return last
                if self.step % self.ckpt_every == 0 or self.step == self.end_step:
                    self.save_checkpoint()
                    saved_at = self.step
            if saved_at != self.step:
                self.save_checkpoint()
            return last
        finally:
            stop.restore()
            bar.close()
            logger.close()

    def _log_metrics(self, logger: MetricsLogger, result: dict[str, Any], tok_s: float, flops_per_sample: float,
                     peak: float | None) -> dict[str, Any]:
        names = sorted(result["mod_loss"])
        # Average the step's losses over ranks (a collective at a step every rank reaches).
        t = torch.tensor([result["loss"]] + [result["mod_loss"][n] for n in names], dtype=torch.float64)
        D.all_reduce(t)
        t /= self.info.world_size
        tokens = self.schedule.tokens_seen(self.step)
        samples_s_dev = tok_s / self.schedule.tokens_per_sample / self.info.world_size
        row: dict[str, Any] = {
            "loss": float(t[0]), **{f"{n}_loss": float(t[1 + i]) for i, n in enumerate(names)},
            "lr": result["lr"], "grad_norm": result["grad_norm"],
            "total_tokens_seen_b": tokens / 1e9, "tokens_per_s_per_device": tok_s / self.info.world_size,
            "mfu": mfu(flops_per_sample, samples_s_dev, peak), "peak_memory_gib": peak_memory_gib(self.info.device),
            "skipped_steps": self.guard.total_skipped, "epoch": self.step / self.schedule.steps_per_epoch,
        }
        for key, value in dict(getattr(self.train_loader, "stats", {}) or {}).items():
            if isinstance(value, (int, float)):
                row[f"data/{key}"] = value
        logger.log(self.step, row)
        return row


def build_model(cfg: TrainConfig) -> nn.Module:
    """The model named by ``cfg.model`` with ``cfg.modalities`` and ``cfg.model_overrides``."""
    import dataclasses

    from egom2p.model import EgoM2P, EgoM2PConfig

    known = {f.name for f in dataclasses.fields(EgoM2PConfig)}
    for key in cfg.model_overrides:
        if key not in known:
            raise ConfigError(f"unknown config key 'model_overrides.{key}' (EgoM2PConfig has {sorted(known)})",
                              "model_overrides")
    kwargs = {"modalities": cfg.modalities, "attn_backend": cfg.attn_backend, "fused_loss": cfg.fused_loss,
              **cfg.model_overrides}
    return EgoM2P.from_preset(cfg.model, **kwargs)


def check_replicas_identical(model: nn.Module) -> None:
    """Collective: raise if the data-parallel ranks hold different weights (DDP must keep them equal).

    Compares a float64 checksum per parameter across ranks; sharded (FSDP) parameters are skipped.
    """
    local = torch.stack([p.detach().double().sum() for p in model.parameters() if not hasattr(p, "full_tensor")])
    mine = local.cpu().tolist()
    everyone = D.gather_objects(mine)
    if any(other != mine for other in everyone):
        raise RuntimeError("data-parallel ranks diverged: their weights differ after training")


def export_pretrained(model: nn.Module, cfg: TrainConfig, directory: Path, is_main: bool) -> None:
    """Collective: gather full weights (DDP, FSDP, compiled or checkpointed alike), rank 0 writes ``save_pretrained``."""
    full = get_model_state_dict(model, options=_FULL_STATE)
    if is_main:
        fresh = build_model(cfg)
        fresh.load_state_dict(full)
        fresh.save_pretrained(directory)
    D.barrier()


def run_training(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build everything from ``cfg`` and train on this rank (the ``egom2p-train`` entry point)."""
    from egom2p.data import build_train_loader, build_val_loaders, load_data_config, load_modalities

    for key in ("min_input_tokens", "min_target_tokens"):
        if getattr(cfg, key) is not None:  # build_train_loader has no such argument (yet)
            raise ConfigError(f"config key '{key}': set it per dataset in the data config ({cfg.data_config})", key)
    info = D.init_distributed(cfg.device)
    main_log = log if info.is_main else (lambda _msg: None)
    try:
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(cfg)
        seed_everything(cfg.seed + info.rank)  # distinct masking/augment draws per rank
        mods = load_modalities(cfg.modalities)
        data_cfg = load_data_config(cfg.data_config)
        loader = build_train_loader(data_cfg, mods, batch_size=cfg.batch_size, rank=info.rank,
                                    world_size=info.world_size, num_workers=cfg.num_workers, seed=cfg.seed,
                                    num_input_tokens=cfg.num_input_tokens, num_target_tokens=cfg.num_target_tokens)

        def val_loaders() -> Mapping[str, Iterable]:
            return build_val_loaders(data_cfg, mods, batch_size=max(1, int(1.5 * cfg.batch_size)), rank=info.rank,
                                     world_size=info.world_size, num_input_tokens=cfg.num_input_tokens,
                                     num_target_tokens=cfg.num_target_tokens)

        trainer = Trainer(cfg, model, loader, info, val_loaders, log=main_log)
        s = trainer.schedule
        main_log(f"egom2p-train: model {cfg.model} ({trainer.num_params / 1e6:.2f}M parameters), "
                 f"world size {info.world_size}, device {info.device}, dtype {cfg.dtype}, output {cfg.output_dir}")
        main_log(f"schedule: peak lr {s.peak_lr:.3g}, global batch {s.global_batch}, {s.epochs} epochs x "
                 f"{s.steps_per_epoch} steps = {s.total_steps} steps (warmup {s.warmup_steps}), "
                 f"running to step {trainer.end_step}")
        if cfg.auto_resume:
            resumed = trainer.try_resume()
            if resumed is not None:
                main_log(f"resumed from {resumed} at step {trainer.step}")
        if info.is_main:
            save_resolved_config(cfg, cfg.output_dir)
        last = trainer.fit()
        if info.distributed and not cfg.fsdp:
            check_replicas_identical(trainer.model)
            main_log(f"replicas identical on {info.world_size} ranks at step {trainer.step}")
        if trainer.step >= trainer.end_step:
            final = Path(cfg.output_dir) / "final"
            export_pretrained(trainer.model, cfg, final, info.is_main)
            main_log(f"done at step {trainer.step}; weights for inference in {final}")
        return last
    finally:
        D.shutdown_distributed()
