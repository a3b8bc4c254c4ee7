"""The training loop: accumulation, clipping, skipping bad steps, checkpoints, validation, metrics.

One loop for every recipe (:mod:`egom2p.train.recipe`): the recipe builds the model and the loaders,
prepares each batch, computes the loss and what to log, and validates; the loop, DDP, checkpoints, exact
resume, SIGTERM, the non-finite step guard and the metrics are the same for all. ``Trainer`` takes
ready-made pieces (model, loaders, recipe) so that it can be tested in-process with a tiny model and a fake
loader; ``run_training`` builds those pieces from a ``TrainConfig`` (the console script's path).

The loop orchestrates; the pieces with a job of their own live beside it: the micro-batches of a step
(:mod:`egom2p.train.accumulate`), when to log, checkpoint and validate (:mod:`egom2p.train.cadence`), the
metrics row (:mod:`egom2p.train.step_metrics`), the config changes a resume accepts
(:mod:`egom2p.train.resume_changes`) and the optimizer state across a resume (:mod:`egom2p.train.optim_state`).
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from egom2p.core.checkpoints import step_dir_name
from egom2p.train import distributed as D
from egom2p.train import resume_changes
from egom2p.train.accumulate import accumulate
from egom2p.train.cadence import Cadence
from egom2p.train.checkpoint import CheckpointManager, detached
from egom2p.train.config import ConfigError, TrainConfig, save_resolved_config
from egom2p.train.faults import BadStepGuard, NonFiniteStepError, StopRequest
from egom2p.train.finetune import Finetuning, match_pretrained
from egom2p.train.memory_check import check_training_memory
from egom2p.train.metrics import MetricsLogger, ProgressBar
from egom2p.train.optim import build_optimizer
from egom2p.train.optim_state import drop_unsaved_state, follow_config
from egom2p.train.parallel import parallelize, wrap_ddp
from egom2p.train.recipe import Recipe, TrainLoader, ValLoaders, build_recipe
from egom2p.train.recipes.egom2p import EgoM2PRecipe
from egom2p.train.rng import capture_rng_state, restore_rng_state, seed_everything
from egom2p.train.run_lock import RunLock, hold_run_directory
from egom2p.train.schedule import Schedule, derive_schedule
from egom2p.train.step_metrics import Window, metrics_row
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

_FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)


class Trainer:
    """Runs optimizer steps from ``step`` to the end of the run on one rank.

    ``recipe`` says how to feed, score and validate ``model``; a tuple ``(input, target)`` stands for the
    ``egom2p`` recipe with those forward token budgets (an ``EgoM2P`` built by the caller).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, train_loader: TrainLoader, info: D.DistInfo,
                 recipe: Recipe | tuple[int, int], val_loaders: ValLoaders | None = None,
                 log: Callable[[str], None] = print):
        self.cfg, self.info, self.log = cfg, info, log
        self.recipe: Recipe = EgoM2PRecipe(cfg, recipe) if isinstance(recipe, tuple) else recipe
        self.schedule: Schedule = derive_schedule(cfg, info.world_size, *self.recipe.schedule_inputs())
        self.bare_model = model.to(info.device)
        # LoRA layers are injected here; the optimizer holds every parameter that trains in some phase.
        self.finetune = Finetuning(cfg, self.bare_model, self.schedule.frozen_steps, enabled=self.recipe.name == "egom2p")
        self.finetune.optimizer_set(self.bare_model)
        self.num_params = sum(p.numel() for p in self.bare_model.parameters() if p.requires_grad)
        self.model = parallelize(self.bare_model, info, fsdp=cfg.fsdp, compile=cfg.compile,
                                 activation_checkpointing=cfg.activation_checkpointing,
                                 broadcast_buffers=self.recipe.broadcast_buffers)
        opt = cfg.optim
        self.optimizer = build_optimizer(self.bare_model, self.schedule.peak_lr, opt.weight_decay, opt.opt_betas, opt.opt_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule.lr_lambda)
        self.train_loader, self.val_loaders = train_loader, val_loaders
        self.guard = BadStepGuard(cfg.max_bad_steps)
        ckpt = cfg.checkpoint
        self.checkpoints = CheckpointManager(cfg.output_dir, ckpt.keep_last_k, ckpt.s3_save_dir, log=log)
        if info.is_main:  # what a killed save left behind; no save is in progress at start-up
            for stale in self.checkpoints.remove_temp_dirs():
                log(f"removed {stale} (left by an interrupted save)")
        self.step = 0
        total, max_steps = self.schedule.total_steps, cfg.schedule.max_steps
        self.end_step = min(total, max_steps or total)
        self.cadence = Cadence.from_config(cfg, self.schedule.steps_per_epoch, self.end_step)
        self.val_failures = 0
        self._iter = None
        self._bad_batches: list[Any] = []
        self.run_lock: RunLock | None = None  # rank 0's hold on output_dir (run_training sets it)

    # ------------------------------------------------------------------ the settings a checkpoint remembers
    def resume_settings(self) -> dict[str, Any]:
        """The settings a resume compares with the current config (plain types, stored in ``train_state.pt``)."""
        opt, s = self.cfg.optim, self.schedule
        identity = {name: value for name, (_, value) in self.recipe.resume_identity(self.train_loader).items()}
        return {"seed": self.cfg.seed, "optim.blr": opt.blr, "optim.min_blr": opt.min_blr,
                "optim.weight_decay": opt.weight_decay, "optim.opt_betas": list(opt.opt_betas),
                "optim.opt_eps": opt.opt_eps, "optim.clip_grad": opt.clip_grad, "global_batch_size": s.global_batch,
                "accum_iter": s.accum_iter, "peak_lr": s.peak_lr, "warmup_steps": s.warmup_steps,
                "total_steps": s.total_steps, "world_size": self.info.world_size, **identity}

    def _saved_config(self, state: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Rank 0: the resolved config a checkpoint was trained with (:func:`egom2p.train.resume_changes.saved_config`)."""
        return resume_changes.saved_config(state, self.cfg.output_dir, self.log)

    def _report_changes(self, saved: Mapping[str, Any], saved_config: Mapping[str, Any] | None, path: str) -> bool:
        """Log (or refuse) the config changes since the checkpoint at ``path`` whose ``resume_settings()`` are
        ``saved`` (:func:`egom2p.train.resume_changes.report_changes`); returns whether the data streams restart."""
        identity = self.recipe.resume_identity(self.train_loader)
        positioned_by = {"seed": "seed", **{name: key for name, (key, _) in identity.items()}}
        return resume_changes.report_changes(self.cfg, saved, self.resume_settings(), saved_config, positioned_by, path,
                                             self.step, self.log)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, background: bool = False) -> Path | None:
        """Collective: gather full weights and state, rank 0 writes ``checkpoints/step-<N>/``. Returns it on rank 0.

        Rank 0 first waits for a background save still in flight and raises its error. With ``background``
        rank 0 hands a copy of the state to the manager's writer thread (``save_async``) and returns None at once:
        the gather and the barrier stay synchronous, the writing, pruning and upload run while training goes on.
        """
        if self.info.is_main:
            try:
                self.checkpoints.wait()
            finally:  # before writing; and a background write that failed because output_dir vanished says so
                self._check_run_dir()
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer, options=_FULL_STATE)
        rng = D.gather_objects(capture_rng_state())  # per rank, in rank order
        data = D.gather_objects(self.train_loader.state_dict())
        path = None
        if self.info.is_main:
            state = {"step": self.step, "world_size": self.info.world_size, "optimizer": optim_sd,
                     "guard": self.guard.state_dict(), "recipe": self.resume_settings(), "rng": rng,
                     "data": data, "config": self.cfg.to_dict(), "finetune": self.finetune.state_dict()}
            model_sd, adapter = self.finetune.split_for_checkpoint(model_sd)
            if background:
                model_sd, state, adapter = detached((model_sd, state, adapter), self.bare_model, self.optimizer)
                self.checkpoints.save_async(self.step, model_sd, self.bare_model.config, state, adapter)
            else:
                path = self.checkpoints.save(self.step, model_sd, self.bare_model.config, state, adapter)
        D.barrier()
        return path

    def load_checkpoint(self, model_sd: dict[str, torch.Tensor], state: Mapping[str, Any], path: str = "") -> None:
        """Collective: restore what rank 0 read (other ranks pass empty dicts); weights and optimizer are broadcast.

        The LR schedule and optimizer hyperparameters follow the *current* config at the restored step;
        changes are logged, and those that cannot be honoured raise ``ConfigError``. Per-rank RNG and
        data positions are scattered back when the world size is unchanged. The bad-step counter restarts at 0.
        """
        broadcast = self.info.distributed  # rank 0 alone read the files
        small = D.broadcast_object({"step": state["step"], "world_size": state["world_size"], "guard": state["guard"],
                                    "recipe": state.get("recipe", {}), "config": self._saved_config(state),
                                    "finetune": state.get("finetune", {}),
                                    "optimizer_state_keys": sorted(state.get("optimizer", {}).get("state", {}))}
                                   if self.info.is_main else None)
        self.step = small["step"]
        self.finetune.load_state_dict(small["finetune"])
        streams_moved = self._report_changes(small["recipe"], small["config"], path)
        set_model_state_dict(self.model, model_sd,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast))
        # Not strict: a parameter that never received a gradient has no AdamW state yet.
        set_optimizer_state_dict(self.model, self.optimizer, dict(state.get("optimizer", {})),
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast,
                                                          strict=False))
        drop_unsaved_state(self.bare_model, self.optimizer, small["optimizer_state_keys"])
        self.scheduler = follow_config(self.optimizer, self.cfg.optim, self.schedule, self.step)
        self.guard.load_state_dict(small["guard"])
        self.guard.in_a_row = 0  # a resumed run (e.g. with a lower LR) gets its full allowance of bad steps
        saved_world = small["world_size"]
        if saved_world == self.info.world_size and not streams_moved:
            restore_rng_state(D.scatter_objects(state["rng"] if self.info.is_main else None))
            self.train_loader.load_state_dict(D.scatter_objects(state["data"] if self.info.is_main else None))
        else:
            old_batch = small["recipe"].get("global_batch_size", "?")
            same = old_batch == self.schedule.global_batch
            why = "the seed or the training data changed" if saved_world == self.info.world_size else (
                f"checkpoint was written with world size {saved_world} (accum_iter "
                f"{small['recipe'].get('accum_iter', '?')}), now {self.info.world_size} (accum_iter "
                f"{self.schedule.accum_iter}): " + (f"same global batch {old_batch} and schedule" if same else
                f"global batch {old_batch} -> {self.schedule.global_batch}, schedule recomputed"))
            self.log(f"resume: {why}; data streams and RNG restart (reseeded with the step)")
            seed_everything(self.cfg.seed + self.info.rank + 1_000_003 * self.step)

    def _fits(self, weights: Mapping[str, torch.Tensor]) -> str | None:
        """Why ``weights`` cannot be loaded into this model (keys or shapes differ), or None."""
        ours = {k: tuple(v.shape) for k, v in self.bare_model.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in weights.items()}
        if ours == theirs:
            return None
        return (f"keys or shapes differ from the {self.recipe.model_key} section: "
                f"{sorted(set(ours.items()) ^ set(theirs.items()))[:4]} ...")

    def init_weights(self, source: str | Path) -> str:
        """Collective: start from the weights of ``source`` (anything the recipe's ``load_pretrained`` opens); returns
        the line to log.

        Rank 0 reads them and checks they fit this model; every rank receives them by broadcast. For the ``egom2p``
        recipe the modalities may differ (:func:`egom2p.train.finetune.match_pretrained`): a new one keeps its fresh
        embeddings, a dropped one is ignored; other recipes need the same keys and shapes.
        """
        weights, problem, summary, new = {}, None, f"initialised weights from {source}", []
        if self.info.is_main:
            try:
                weights = self.recipe.load_pretrained(source)
                if self.finetune.enabled:
                    ours = self.bare_model.state_dict()
                    match = match_pretrained(self.finetune.plain_shapes(ours), weights)
                    weights = {**ours, **self.finetune.to_model_names(match.weights)}
                    summary, new = match.summary(str(source)), match.new_modalities
                else:
                    problem = self._fits(weights)
            except (FileNotFoundError, ValueError) as err:
                problem = str(err)
        problem, summary, new = D.broadcast_object((problem, summary, new))
        if problem is not None:
            raise ConfigError(f"config key 'checkpoint.init_from': {source}: {problem}", "checkpoint.init_from")
        set_model_state_dict(self.model, weights,
                             options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=self.info.distributed))
        self.finetune.set_new_modalities(new)
        return summary

    def apply_finetune_plan(self, announce: bool = False) -> None:
        """Collective: make the parameters that train at this step the trainable ones (the fine-tuning warm-up and
        LoRA, :mod:`egom2p.train.finetune`); DDP is rebuilt when that set changes (it fixes it when built). Logs what
        trains when it changed, or with ``announce``."""
        if not self.finetune.apply(self.bare_model, self.step):
            if announce:
                self.log(self.finetune.describe(self.bare_model, self.step))
            return
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            self.model = None  # the old wrapper goes before the new one registers its hooks
            self.model = wrap_ddp(self.bare_model, self.info, self.recipe.broadcast_buffers)
        self.log(self.finetune.describe(self.bare_model, self.step))

    def try_resume(self) -> Path | None:
        """Load the newest complete checkpoint, if any: rank 0 picks and reads it, the others receive it."""
        found = self.checkpoints.load_latest() if self.info.is_main else None
        if found:
            found = (found[0], self.finetune.to_model_names(found[1]), found[2])
        problem = self._fits(found[1]) if found else None
        chosen, problem = D.broadcast_object((str(found[0]) if found else None, problem))
        if chosen is None:
            return None
        if problem is not None:
            key = self.recipe.model_key
            raise ConfigError(f"config key '{key}': cannot resume from {chosen}: {problem}; resume with the {key} "
                              "section it was written with, or start a new output_dir with checkpoint.init_from", key)
        model_sd, state = (found[1], found[2]) if found else ({}, {})
        self.load_checkpoint(model_sd, state, chosen)
        return Path(chosen)

    # ------------------------------------------------------------------ one step
    def train_step(self, stop: StopRequest | None = None) -> dict[str, Any]:
        """One optimizer step over ``accum_iter`` micro-batches (:func:`egom2p.train.accumulate.accumulate`); skips
        the update if anything is non-finite."""
        cfg, model = self.cfg, self.model
        model.train()
        if self._iter is None:
            self._iter = iter(self.train_loader)
        acc = accumulate(model, self.bare_model, self.recipe, self._iter, self.schedule.accum_iter, self.info.device,
                         cfg.dtype)
        self._bad_batches = acc.bad_batches
        clip = cfg.optim.clip_grad if cfg.optim.clip_grad is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2 returns a DTensor
            grad_norm = grad_norm.full_tensor()
        grad_norm = float(grad_norm)
        # One small all-reduce makes every rank agree on skipping and stopping.
        flags = torch.tensor([float(not acc.finite or not math.isfinite(grad_norm)),
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
        return {"loss": acc.loss, "scalars": acc.scalars, "grad_norm": grad_norm, "lr": lr, "skipped": skipped,
                "stop": bool(flags[1].item()), "flops_computed": acc.flops_computed, "flops_valid": acc.flops_valid,
                "valid_tokens": acc.valid_tokens}

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """The recipe's validation metrics; never raises for bad data or I/O.

        A failure is logged, counted in ``val/failures`` and leaves training running.
        """
        if self.val_loaders is None:
            return {}
        metrics, failed = self.recipe.validate(self.bare_model, self.val_loaders, self.info.device, step=self.step,
                                               log=self.log)
        self.val_failures += failed
        if failed:
            metrics["val/failures"] = self.val_failures
        return metrics

    # ------------------------------------------------------------------ the loop
    def _save_debug_batch(self, error: Exception) -> Path:
        everyone = D.gather_objects(self._bad_batches)
        path = Path(self.cfg.output_dir) / "debug_batch.pt"
        if self.info.is_main:
            torch.save({"step": self.step, "error": str(error), "batches_per_rank": everyone}, path)
        return path

    def _check_run_dir(self) -> None:
        """Stop with one line if output_dir was deleted, replaced or made read-only (never write into a new one)."""
        if self.run_lock is not None:
            self.run_lock.check()

    def _healthy(self) -> bool:
        """No checkpoint is written inside a run of non-finite steps (it would hold the diverging state)."""
        return self.guard.in_a_row == 0

    def _final_save_postponed(self, what: str) -> NonFiniteStepError:
        """The error for a run that ends inside a non-finite streak: no final checkpoint, so not done; what to do."""
        if self.info.is_main:
            self.checkpoints.wait()  # the newest checkpoint named below is complete
        saved = self.checkpoints.list()
        advice = (f"the newest checkpoint is {saved[-1][1]}: rerun the same command to resume from it" if saved else
                  f"{self.checkpoints.dir} holds no checkpoint: rerun the same command to start again")
        return NonFiniteStepError(
            f"{what} inside {self.guard.in_a_row} non-finite steps in a row, so its final checkpoint was not written; "
            f"{advice} (with a lower optim.blr, or optim.clip_grad set, if the loss diverges again)")

    def fit(self) -> dict[str, Any]:
        """Train until ``end_step`` (or a stop request); returns the last logged metrics.

        Per step: train, log, checkpoint (when due and healthy), then validate (when due). With
        ``checkpoint.async_save`` the periodic checkpoints are written in the background; the last one (end of
        the run, stop request) is synchronous and waits for the one in flight. A background save's error is
        raised at the next save or when ``fit`` returns (only logged if ``fit`` is already raising another).
        A run that ends (or is stopped) inside a non-finite streak has no final checkpoint: ``NonFiniteStepError``
        names the newest one and what to do.
        """
        cfg, info = self.cfg, self.info
        met = cfg.metrics
        logger = MetricsLogger(cfg.output_dir, info.is_main, met.log_wandb, met.wandb_project, met.wandb_entity,
                               met.wandb_run_name, cfg.to_dict())
        bar = ProgressBar(self.end_step, self.step, info.is_main)
        stop = StopRequest()
        window = Window()
        last: dict[str, Any] = {}
        saved_at, save_due = self.step, False
        failed = False
        try:
            self.apply_finetune_plan(announce=self.finetune.active)
            while self.step < self.end_step:
                try:
                    result = self.train_step(stop)
                except NonFiniteStepError as err:
                    path = self._save_debug_batch(err)
                    raise NonFiniteStepError(f"{err} at step {self.step}; offending batches saved to {path}") from None
                if self.step == self.schedule.frozen_steps:  # the warm-up ends: everything trains from here
                    self.apply_finetune_plan()
                window.add(result)
                bar.update(result["loss"], window.valid_tokens / max(window.elapsed(), 1e-9))
                if self.cadence.log_due(self.step):
                    last = self._log_metrics(logger, result, window)
                    window = Window()
                if result["stop"]:
                    who = stop.requested or "by another rank"
                    if not self._healthy():
                        raise self._final_save_postponed(f"stop requested ({who}) at step {self.step}")
                    path = self.save_checkpoint()
                    self.log(f"stop requested ({who}): checkpoint {path or ''} written at step {self.step}, exiting")
                    return last
                due = self.cadence.checkpoint_due(self.step)
                save_due = save_due or due  # a postponed checkpoint stays due until a healthy step
                if save_due and self._healthy():
                    self.save_checkpoint(background=cfg.checkpoint.async_save and self.step < self.end_step)
                    saved_at, save_due = self.step, False
                elif due:
                    self.log(f"checkpoint of step {self.step} postponed: {self.guard.in_a_row} non-finite steps in a row")
                if self.cadence.validate_due(self.step) and self.val_loaders is not None:
                    val = self.validate()
                    self._check_run_dir()
                    logger.log(self.step, val)
                    last.update(val)
            if not self._healthy():
                raise self._final_save_postponed(f"the run ended at step {self.step}")
            if saved_at != self.step:
                self.save_checkpoint()
            return last
        except BaseException:
            failed = True
            raise
        finally:
            try:
                if info.is_main:  # a background save still in flight: never left behind, its error never lost
                    self.checkpoints.wait(reraise=not failed)
            finally:
                stop.restore()
                bar.close()
                logger.close()

    def _log_metrics(self, logger: MetricsLogger, result: dict[str, Any], window: Window) -> dict[str, Any]:
        """Collective: log the metrics row of ``result``'s step (:func:`egom2p.train.step_metrics.metrics_row`)."""
        row = metrics_row(result, window, self.info, self.cfg.dtype, self.schedule, self.step, self.guard.total_skipped,
                          getattr(self.train_loader, "stats", {}))
        self._check_run_dir()
        logger.log(self.step, row)
        return row


def run_training(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build everything from ``cfg`` and train on this rank (the ``egom2p-train`` entry point)."""
    info = D.init_distributed(cfg.device)
    try:
        with hold_run_directory(cfg.output_dir, info, log) as lock:  # before anything is written there
            return _train(cfg, info, log, lock)
    except BaseException as err:
        # The traceback's frames hold the trainer; release it (and the DDP model's hold on the process
        # group) before the group is destroyed. The error and its message are unchanged.
        traceback.clear_frames(err.__traceback__)
        raise
    finally:
        D.shutdown_distributed()


def build_trainer(cfg: TrainConfig, info: D.DistInfo, log: Callable[[str], None] = print,
                  recipe: Recipe | None = None) -> Trainer:
    """The config's recipe (``recipe``, or built from ``cfg``), its model (the same initial weights on every rank),
    loaders and the ``Trainer``."""
    recipe = recipe or build_recipe(cfg)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = recipe.build_model()
    seed_everything(cfg.seed + info.rank)  # distinct masking/augment draws per rank
    loader = recipe.build_train_loader(info)
    return Trainer(cfg, model, loader, info, recipe, recipe.build_val_loaders(info), log=log)


def _train(cfg: TrainConfig, info: D.DistInfo, log: Callable[[str], None], lock: RunLock | None) -> dict[str, Any]:
    """``run_training`` inside the process group: build, resume or initialise, then fit or evaluate."""
    main_log = log if info.is_main else (lambda _msg: None)
    recipe = build_recipe(cfg)

    def check_memory() -> None:  # before anything is allocated; rank 0's device stands for every rank's
        estimate, problem = check_training_memory(recipe, cfg, info)
        main_log(f"memory estimate: {estimate.describe()} per rank")
        if problem is not None:
            raise ConfigError(problem, "check_memory")

    D.check_on_main(info, check_memory)
    trainer = build_trainer(cfg, info, main_log, recipe)
    trainer.run_lock = lock
    main_log(f"egom2p-train: {recipe.describe()} ({trainer.num_params / 1e6:.2f}M parameters), "
             f"world size {info.world_size}, device {info.device}, dtype {cfg.dtype}, output {cfg.output_dir}")
    main_log(f"schedule: {trainer.schedule.describe()}, running to step {trainer.end_step}")
    D.check_on_main(info, recipe.check_sources)  # the data sources are there
    resumed = trainer.try_resume() if cfg.checkpoint.auto_resume else None
    if resumed is not None:
        main_log(f"resumed from {resumed} at step {trainer.step}")
    elif cfg.checkpoint.init_from:
        main_log(trainer.init_weights(cfg.checkpoint.init_from))
    if cfg.eval_only:
        if resumed is None and not cfg.checkpoint.init_from:
            raise ConfigError(f"config key 'eval_only': no weights to evaluate: {trainer.checkpoints.dir} holds no "
                              "checkpoint and checkpoint.init_from is not set", "eval_only")
        metrics = trainer.validate()
        main_log(json.dumps({"step": trainer.step, **metrics}) if metrics else "eval_only: the config has no validation data")
        return metrics
    if info.is_main:
        save_resolved_config(cfg, cfg.output_dir)
    last = trainer.fit()
    if info.distributed and not cfg.fsdp:
        D.check_replicas_identical(trainer.model)
        main_log(f"replicas identical on {info.world_size} ranks at step {trainer.step}")
    if trainer.step >= trainer.end_step:  # fit saved this step's checkpoint (or resumed from it), else it raised
        main_log(f"done at step {trainer.step}; weights for inference in "
                 f"{trainer.checkpoints.dir / step_dir_name(trainer.step)}")
    return last
