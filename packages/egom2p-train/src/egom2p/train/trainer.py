"""The training loop: accumulation, clipping, skipping bad steps, checkpoints, validation, metrics.

``Trainer`` takes ready-made pieces (model, loaders) so that it can be tested in-process with a tiny
model and a fake loader; ``run_training`` builds those pieces from a ``TrainConfig`` (the console
script's path).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from egom2p.train import distributed as D
from egom2p.train.checkpoint import CheckpointManager, step_dir_name
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
    """Runs optimizer steps from ``step`` to the end of the run on one rank.

    ``budgets`` are the model's forward token budgets (input, target): the data config's
    ``max_input_tokens`` / ``max_target_tokens``.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, train_loader: TrainLoader, info: D.DistInfo,
                 budgets: tuple[int, int], val_loaders: Callable[[], Mapping[str, Iterable]] | None = None,
                 log: Callable[[str], None] = print):
        self.cfg, self.info, self.log = cfg, info, log
        self.num_input_tokens, self.num_target_tokens = budgets
        self.schedule: Schedule = derive_schedule(cfg, info.world_size, sum(budgets))
        self.bare_model = model.to(info.device)
        self.num_params = sum(p.numel() for p in self.bare_model.parameters() if p.requires_grad)
        self.model = parallelize(self.bare_model, info, fsdp=cfg.fsdp, compile=cfg.compile,
                                 activation_checkpointing=cfg.activation_checkpointing)
        opt = cfg.optim
        self.optimizer = build_optimizer(self.bare_model, self.schedule.peak_lr, opt.weight_decay, opt.opt_betas, opt.opt_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule.lr_lambda)
        self.train_loader, self.val_loaders = train_loader, val_loaders
        self.guard = BadStepGuard(cfg.max_bad_steps)
        ckpt = cfg.checkpoint
        self.checkpoints = CheckpointManager(cfg.output_dir, ckpt.keep_last_k, ckpt.s3_save_dir)
        if info.is_main:  # what a killed save left behind; no save is in progress at start-up
            for stale in self.checkpoints.remove_temp_dirs():
                log(f"removed {stale} (left by an interrupted save)")
        self.step = 0
        total, max_steps = self.schedule.total_steps, cfg.schedule.max_steps
        self.end_step = min(total, max_steps or total)
        spe = self.schedule.steps_per_epoch
        self.ckpt_every = ckpt.every_steps or ckpt.save_ckpt_freq * spe
        self.val_every = cfg.metrics.val_every_steps or cfg.metrics.eval_freq * spe
        self._iter = None
        self._bad_batches: list[Batch] = []

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        """Collective: gather full weights and state, rank 0 writes ``checkpoints/step-<N>/``. Returns it on rank 0."""
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=_FULL_STATE)
        rng = D.gather_objects(capture_rng_state())  # per rank, in rank order
        data = D.gather_objects(self.train_loader.state_dict())
        path = None
        if self.info.is_main:
            state = {"step": self.step, "world_size": self.info.world_size, "optimizer": optim_sd,
                     "scheduler": self.scheduler.state_dict(), "guard": self.guard.state_dict(), "rng": rng, "data": data}
            path = self.checkpoints.save(self.step, model_sd, self.bare_model.config, state)
        D.barrier()
        return path

    def load_checkpoint(self, model_sd: dict[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        """Collective: restore what rank 0 read (other ranks pass empty dicts); weights and optimizer are broadcast.

        Per-rank RNG and data positions are scattered back when the world size is unchanged.
        """
        broadcast = self.info.distributed  # rank 0 alone read the files
        set_model_state_dict(self.model, model_sd,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast))
        # Not strict: a parameter that never received a gradient has no AdamW state yet.
        set_optimizer_state_dict(self.model, self.optimizer, dict(state.get("optimizer", {})),
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast,
                                                          strict=False))
        small = D.broadcast_object({k: state[k] for k in ("step", "world_size", "scheduler", "guard")}
                                   if self.info.is_main else None)
        self.scheduler.load_state_dict(small["scheduler"])
        self.guard.load_state_dict(small["guard"])
        self.step = small["step"]
        if small["world_size"] == self.info.world_size:
            restore_rng_state(D.scatter_objects(state["rng"] if self.info.is_main else None))
            self.train_loader.load_state_dict(D.scatter_objects(state["data"] if self.info.is_main else None))
        else:
            self.log(f"warning: checkpoint was written with world size {small['world_size']}, now "
                     f"{self.info.world_size}: data streams and RNG restart (reseeded with the step)")
            seed_everything(self.cfg.seed + self.info.rank + 1_000_003 * self.step)

    def init_weights(self, source: str | Path) -> None:
        """Collective: start from the weights of ``source`` (anything ``EgoM2P.from_pretrained`` opens).

        Rank 0 reads them and checks they fit this model; every rank receives them by broadcast.
        """
        from egom2p.model import EgoM2P

        weights, problem = {}, None
        if self.info.is_main:
            try:
                weights = EgoM2P.from_pretrained(source).state_dict()
                ours = {k: tuple(v.shape) for k, v in self.bare_model.state_dict().items()}
                theirs = {k: tuple(v.shape) for k, v in weights.items()}
                if ours != theirs:
                    problem = (f"its weights do not fit the model section (keys or shapes differ: "
                               f"{sorted(set(ours.items()) ^ set(theirs.items()))[:4]} ...)")
            except (FileNotFoundError, ValueError) as err:
                problem = str(err)
        problem = D.broadcast_object(problem)
        if problem is not None:
            raise ConfigError(f"config key 'checkpoint.init_from': {source}: {problem}", "checkpoint.init_from")
        set_model_state_dict(self.model, weights,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=self.info.distributed))

    def try_resume(self) -> Path | None:
        """Load the newest complete checkpoint, if any: rank 0 picks and reads it, the others receive it."""
        found = self.checkpoints.load_latest() if self.info.is_main else None
        chosen = D.broadcast_object(str(found[0]) if found else None)
        if chosen is None:
            return None
        model_sd, state = (found[1], found[2]) if found else ({}, {})
        self.load_checkpoint(model_sd, state)
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
        accum = cfg.schedule.accum_iter
        for micro in range(accum):
            batch = self._next_batch()
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast_context(self.info.device, cfg.dtype):
                    out = model(batch, num_encoder_tokens=self.num_input_tokens,
                                num_decoder_tokens=self.num_target_tokens, loss_type=cfg.loss_type)
                (out.loss / accum).backward()
            loss = float(out.loss.detach())
            if not math.isfinite(loss):
                bad_local = True
                self._bad_batches.append({k: {n: t.cpu() for n, t in v.items()} for k, v in batch.items()})
            losses.append(loss)
            for name, value in out.mod_loss.items():
                mod_sums[name] = mod_sums.get(name, 0.0) + float(value.detach()) / accum
        clip = cfg.optim.clip_grad if cfg.optim.clip_grad is not None else math.inf
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
                    out = self.model(move_batch(batch, self.info.device), num_encoder_tokens=self.num_input_tokens,
                                     num_decoder_tokens=self.num_target_tokens, loss_type=self.cfg.loss_type)
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
        met = cfg.metrics
        logger = MetricsLogger(cfg.output_dir, info.is_main, met.log_wandb, met.wandb_project, met.wandb_entity,
                               met.wandb_run_name, cfg.to_dict())
        bar = ProgressBar(self.end_step, self.step, info.is_main)
        stop = StopRequest()
        peak = peak_flops(info.device, cfg.dtype)
        flops = getattr(self.bare_model, "flops_per_sample", None)
        flops_per_sample = flops(self.num_input_tokens, self.num_target_tokens) if callable(flops) else 0.0
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
                if self.step % met.log_every_steps == 0 or self.step == self.end_step:
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


def check_replicas_identical(model: nn.Module) -> None:
    """Collective: raise if the data-parallel ranks hold different weights (DDP must keep them equal).

    Compares a float64 checksum per parameter across ranks; sharded (FSDP) parameters are skipped.
    """
    local = torch.stack([p.detach().double().sum() for p in model.parameters() if not hasattr(p, "full_tensor")])
    mine = local.cpu().tolist()
    everyone = D.gather_objects(mine)
    if any(other != mine for other in everyone):
        raise RuntimeError("data-parallel ranks diverged: their weights differ after training")


def run_training(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build everything from ``cfg`` and train on this rank (the ``egom2p-train`` entry point)."""
    info = D.init_distributed(cfg.device)
    try:
        return _train(cfg, info, log)
    except BaseException as err:
        # The traceback's frames hold the trainer; release it (and the DDP model's hold on the process
        # group) before the group is destroyed. The error and its message are unchanged.
        traceback.clear_frames(err.__traceback__)
        raise
    finally:
        D.shutdown_distributed()


def _train(cfg: TrainConfig, info: D.DistInfo, log: Callable[[str], None]) -> dict[str, Any]:
    """``run_training`` inside the process group: build, resume or initialise, then fit or evaluate."""
    from egom2p.data import build_train_loader, build_val_loaders
    from egom2p.model import EgoM2P

    model_cfg, data_cfg = cfg.model_config(), cfg.data_config()
    main_log = log if info.is_main else (lambda _msg: None)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = EgoM2P(model_cfg)
    seed_everything(cfg.seed + info.rank)  # distinct masking/augment draws per rank
    specs, batch_size = model_cfg.modalities, cfg.loader.batch_size
    loader = build_train_loader(data_cfg, specs, batch_size=batch_size, rank=info.rank,
                                world_size=info.world_size, num_workers=cfg.loader.num_workers, seed=cfg.seed)

    def val_loaders() -> Mapping[str, Iterable]:
        return build_val_loaders(data_cfg, specs, batch_size=max(1, int(1.5 * batch_size)), rank=info.rank,
                                 world_size=info.world_size, seed=cfg.seed)

    budgets = (data_cfg.max_input_tokens, data_cfg.max_target_tokens)
    trainer = Trainer(cfg, model, loader, info, budgets, val_loaders, log=main_log)
    main_log(f"egom2p-train: model {cfg.model.preset} ({trainer.num_params / 1e6:.2f}M parameters), "
             f"world size {info.world_size}, device {info.device}, dtype {cfg.dtype}, output {cfg.output_dir}")
    main_log(f"schedule: {trainer.schedule.describe()}, running to step {trainer.end_step}")
    resumed = trainer.try_resume() if cfg.checkpoint.auto_resume else None
    if resumed is not None:
        main_log(f"resumed from {resumed} at step {trainer.step}")
    elif cfg.checkpoint.init_from:
        trainer.init_weights(cfg.checkpoint.init_from)
        main_log(f"initialised weights from {cfg.checkpoint.init_from}")
    if cfg.eval_only:
        if resumed is None and not cfg.checkpoint.init_from:
            raise ConfigError(f"config key 'eval_only': no weights to evaluate: {trainer.checkpoints.dir} holds no "
                              "checkpoint and checkpoint.init_from is not set", "eval_only")
        metrics = trainer.validate()
        main_log(json.dumps({"step": trainer.step, **metrics}) if metrics else "eval_only: the data config has no val datasets")
        return metrics
    if info.is_main:
        save_resolved_config(cfg, cfg.output_dir)
    last = trainer.fit()
    if info.distributed and not cfg.fsdp:
        check_replicas_identical(trainer.model)
        main_log(f"replicas identical on {info.world_size} ranks at step {trainer.step}")
    if trainer.step >= trainer.end_step:
        main_log(f"done at step {trainer.step}; weights for inference in "
                 f"{trainer.checkpoints.dir / step_dir_name(trainer.step)}")
    return last
