"""The training loop (Lightning Fabric: devices, precision, DDP) with exact resume.

A run trains in one or more named stages (e.g. `align`, then `next-item`), each with its own resumable checkpoint.
Every `checkpoint_every` steps and at each epoch end, `checkpoints/<stage>/last.safetensors` records model,
optimizer, scheduler, RNG and the loop position (epoch, batch within the epoch); a killed run restarts from there
and, as batch order is a function of (seed, epoch), finishes with the same weights as an uninterrupted run. A
checkpoint whose learning-rate schedule (total steps) differs from the current budget is refused, never silently
re-scheduled. Validation (NDCG@10 by the same constrained beam search and precision as `mmgr evaluate`, and the
held-out items' cross-entropy, on the plain model, on a fixed user sample) picks the best epoch by
`training.monitor`; training stops when it has not improved for `patience` validations after the learning-rate
warmup (a validation during warmup cannot stop a run that has not yet reached its learning rate). A stage without
validation keeps its final weights. Logs: CSV (and TensorBoard when installed) under `logs/<stage>/`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmgr.config import TrainingConfig
from mmgr.devices import resolve_precision
from mmgr.errors import MmgrError
from mmgr.progress import duration, progress_bar
from mmgr.training.budget import Schedule, clock_budget, resolve_graph
from mmgr.training.checkpoint import checkpoint_progress, load_checkpoint, save_checkpoint
from mmgr.training.data import EncodedExamples, collate, length_batches
from mmgr.training.monitor import improves
from mmgr.training.resume import resumable, setup_settings
from mmgr.weights import BEST, save_weights

if TYPE_CHECKING:   # lightning is imported where a training starts: evaluating and serving never pay for it
    from lightning.fabric import Fabric

NEXT_ITEM = "next-item"
log = logging.getLogger(__name__)
Validate = Callable[[torch.nn.Module], dict[str, float]]     # plain model -> {"ndcg@10": ..., "loss": ...}


def model_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of models that return it as `.loss` (transformers) or as the output itself."""
    out = model(**batch)
    return out.loss if hasattr(out, "loss") else out


@dataclass
class TrainData:
    """What the loop trains on: each epoch's batch keys in order (a function of the epoch alone, so a resumed run
    sees the same batches), how a key becomes a batch of tensors with `labels` (-100 = padding), and the loss of a
    batch (the model's own `.loss` unless an objective says otherwise)."""

    batches: Callable[[int], list[Any]]
    collate: Callable[[Any], dict[str, torch.Tensor]]
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] = model_loss


@dataclass
class FitResult:
    steps: int
    epochs_run: int
    best_epoch: int
    best_score: float | None           # the best validation's `monitor` value
    history: list[dict[str, Any]]
    samples_per_second: float          # training steps only (validation excluded)
    target_tokens_per_second: float    # predicted (non-padding) label tokens per second
    train_seconds: float
    peak_memory_mb: float
    resumed_from_step: int
    graph: str                         # eager or compile (the training step)
    schedule_steps: int                # the cosine schedule's length (fitted to budget_minutes when set)
    budget_steps_per_second: float | None   # the speed a wall-clock budget was fitted with


def bucketed_train_data(examples: EncodedExamples, batch_size: int, seed: int) -> TrainData:
    """Length-bucketed batches, drawn afresh each epoch (`length_batches`)."""
    return TrainData(lambda epoch: length_batches(examples, batch_size, seed, epoch),
                     lambda index: collate(examples, index))


def make_fabric(cfg: TrainingConfig, log_dir: Path) -> Fabric:
    from lightning.fabric import Fabric

    strategy = "ddp" if cfg.devices > 1 else "auto"
    fabric = Fabric(accelerator=cfg.accelerator, devices=cfg.devices, strategy=strategy,
                    precision=resolve_precision(cfg.precision, cfg.accelerator),
                    loggers=_loggers(log_dir))
    fabric.launch()
    return fabric


def fit(run_path: Path, model: torch.nn.Module, data: TrainData, cfg: TrainingConfig,
        validate: Validate | None, weights_info: dict[str, Any],
        fabric: Fabric | None = None, progress: bool = True, stage: str = NEXT_ITEM,
        output: Path | None = None) -> FitResult:
    """Train `model` on `data` as stage `stage`. `validate(plain_model)` returns the validation metrics, of which
    `cfg.monitor` picks the weights saved to `output` (default `model.safetensors`); with `validate=None` the final
    weights are."""
    cfg = cfg.model_copy(update={"precision": resolve_precision(cfg.precision, cfg.accelerator)})  # what resumes
    fabric = fabric or make_fabric(cfg, run_path / "logs" / stage)
    output = output or run_path / BEST
    steps_per_epoch = len(data.batches(0)) // fabric.world_size
    total_steps = int(min(cfg.max_steps or math.inf, cfg.epochs * steps_per_epoch))
    clock = clock_budget(cfg, total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = Schedule(cfg.warmup_steps, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_score": None, "best_epoch": -1, "stale": 0, "history": [],
             "setup_settings": setup_settings(weights_info, cfg), "schedule_steps": total_steps,
             "budget_minutes": cfg.budget_minutes, "seen": {"seconds": 0.0, "samples": 0, "tokens": 0}}
    last = run_path / "checkpoints" / stage / "last.safetensors"
    if last.is_file() and resumable(checkpoint_progress(last), weights_info, cfg):
        state = load_checkpoint(last, model, optimizer, scheduler)
        _check_schedule(last, state, total_steps, cfg.budget_minutes)
        schedule.total = state["schedule_steps"]
    elif last.is_file() and fabric.is_global_zero:
        log.warning("%s is unreadable or belongs to another model or training setup; starting afresh", last)
    resumed_from = state["step"]
    graph = resolve_graph(cfg.graph, total_steps * cfg.batch_size, on_cpu=fabric.device.type == "cpu")
    forward_methods = getattr(model, "forward_methods", ())
    model, optimizer = fabric.setup(torch.compile(model, dynamic=True) if graph == "compile" else model, optimizer)
    for name in forward_methods:            # methods a loss calls: through the wrapper (precision), as forward is
        model.mark_forward_method(name)
    before = dict(state["seen"])                                   # this invocation's share, for its speed
    ends = _StageEnd(fabric, run_path, validate, weights_info, output, cfg.monitor, schedule.warmup,
                     since=(resumed_from, before["seconds"]))
    with progress_bar(f"training ({stage})", total=schedule.total - state["step"],
                      enabled=progress and fabric.is_global_zero) as advance:
        while state["epoch"] < cfg.epochs and state["step"] < schedule.total and state["stale"] < cfg.patience:
            order = _my_batches(data.batches(state["epoch"]), fabric)
            model.train()
            for position in range(state["batch"], len(order)):
                step_started = time.perf_counter()
                batch = fabric.to_device(data.collate(order[position]))
                loss = data.loss(model, batch)
                fabric.backward(loss)
                fabric.clip_gradients(model, optimizer, max_norm=cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state["step"] += 1
                state["batch"] = position + 1
                tokens = int(batch["labels"].gt(0).sum())      # pads: 0 or -100; waits for the device's step
                step_seconds = time.perf_counter() - step_started
                _count(state["seen"], len(batch["labels"]), tokens, step_seconds)
                ends.loss_sum, ends.loss_steps = ends.loss_sum + loss.detach().float(), ends.loss_steps + 1
                advance(1)
                if clock is not None and (fitted := clock.observe(state, step_seconds)) is not None:
                    schedule.total = state["schedule_steps"] = fitted
                    advance(0, total=fitted - resumed_from)
                if state["step"] % 20 == 0:
                    fabric.log_dict({"train/loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, state["step"])
                if state["step"] % cfg.checkpoint_every == 0:
                    _checkpoint(fabric, last, model, optimizer, scheduler, state)
                if cfg.eval_every_steps and state["step"] % cfg.eval_every_steps == 0 and position + 1 < len(order):
                    ends.validate(model, state)
                    model.train()
                    if state["stale"] >= cfg.patience:
                        break
                if state["step"] >= schedule.total or (clock is not None and clock.spent(state)):
                    break
            epoch_done = state["batch"] >= len(order)
            if epoch_done and (state["epoch"] + 1) % cfg.eval_every == 0:
                ends.validate(model, state)
            if epoch_done:
                state["epoch"], state["batch"] = state["epoch"] + 1, 0
            _checkpoint(fabric, last, model, optimizer, scheduler, state)
            if clock is not None and clock.spent(state):
                break
    if validate is None:
        ends.keep_final(model, state)
    elif not state["history"] or state["history"][-1]["step"] != state["step"]:
        # the budget (max_steps) ended mid-epoch, or validation is sparser than epochs: the final weights compete
        ends.validate(model, state)
        _checkpoint(fabric, last, model, optimizer, scheduler, state)
    for logger in fabric.loggers:
        logger.finalize("success")
    done = {key: state["seen"][key] - before[key] for key in before}
    seconds = max(done["seconds"], 1e-9)
    if fabric.is_global_zero:
        picked = (f"best epoch {state['best_epoch']} (valid {cfg.monitor} {state['best_score']:.4f})"
                  if validate is not None else "final weights kept (no validation in this stage)")
        log.info("%s done: %d steps (schedule %d), %d epochs, %s, %.0f s of training in this invocation, "
                 "%.0f samples/s", stage, state["step"], state["schedule_steps"], state["epoch"], picked,
                 done["seconds"], done["samples"] / seconds)
    return FitResult(state["step"], state["epoch"], state["best_epoch"], state["best_score"], state["history"],
                     done["samples"] * fabric.world_size / seconds, done["tokens"] * fabric.world_size / seconds,
                     round(done["seconds"], 3), _peak_memory_mb(), resumed_from, graph, state["schedule_steps"],
                     state.get("budget_steps_per_second"))


def _count(seen: dict[str, Any], samples: int, tokens: int, seconds: float) -> None:
    """Running totals over the whole stage (resumes included), for time-to-quality curves."""
    seen["samples"] += samples
    seen["tokens"] += tokens
    seen["seconds"] += seconds


def _check_schedule(path: Path, state: dict[str, Any], total_steps: int, budget_minutes: float | None) -> None:
    """A resumed run must keep its learning-rate schedule: a changed step, epoch or wall-clock budget is refused.
    A wall-clock budget's fitted schedule is kept (it may be shorter than the step and epoch budgets)."""
    saved = state.get("schedule_steps")
    if state.get("budget_minutes") != budget_minutes:
        raise MmgrError(f"{path} was trained with training.budget_minutes={state.get('budget_minutes')}, now "
                        f"{budget_minutes}: resuming would change its learning-rate schedule. Restore it, or delete "
                        f"{path.parent} to start this stage afresh")
    if saved != total_steps and not (budget_minutes and saved is not None and saved <= total_steps):
        raise MmgrError(f"{path} was trained on a schedule of {saved} steps, but training.epochs/max_steps now give "
                        f"{total_steps}: resuming would change its learning-rate schedule. Restore the budget it was "
                        f"started with, or delete {path.parent} to start this stage afresh")


def machine_load() -> dict[str, float | int]:
    """The machine's 1-minute load average beside the training threads: a load well above them means other work
    shared the cores, so the training seconds around it are not the run's alone ({} where the OS has no load)."""
    if not hasattr(os, "getloadavg"):
        return {}
    return {"load_1m": round(os.getloadavg()[0], 2), "threads": torch.get_num_threads()}


def time_left(state: dict, since: tuple[int, float] = (0, 0.0)) -> str:
    """`, ~1h05m of training left` at this invocation's mean step time (`since`: the step and training seconds it
    resumed from; an earlier invocation may have run on a busier or paused machine); empty at the end or before a
    step of this invocation."""
    left, steps = state["schedule_steps"] - state["step"], state["step"] - since[0]
    if left <= 0 or steps <= 0:
        return ""
    return f", ~{duration(left * (state['seen']['seconds'] - since[1]) / steps)} of training left"


@dataclass
class _StageEnd:
    """Validation and the saving of a stage's selected weights, on the plain (unwrapped) model, outside autocast:
    exactly what `mmgr evaluate` decodes with."""

    fabric: Fabric
    run_path: Path
    score: Validate | None
    weights_info: dict[str, Any]
    output: Path
    monitor: str = "ndcg@10"                   # the validation metric that picks the weights and stops the run
    warmup: int = 0                            # validations up to the end of warmup do not count toward patience
    loss_sum: torch.Tensor | float = 0.0       # training loss summed over the steps since the last validation
    loss_steps: int = 0
    since: tuple[int, float] = (0, 0.0)        # step and training seconds this invocation started from

    def _mean_loss(self) -> float | None:
        """The training loss per step since the last validation, over every rank (None before a step); resets it."""
        if not self.loss_steps:
            return None
        mean = self.fabric.all_reduce(torch.as_tensor(self.loss_sum / self.loss_steps), reduce_op="mean")
        self.loss_sum, self.loss_steps = 0.0, 0
        return float(mean)

    def validate(self, model: torch.nn.Module, state: dict) -> None:
        if self.score is None:
            return
        mean_loss = self._mean_loss()
        plain = _unwrap(model)
        plain.eval()
        metrics = {key: float(value) for key, value in self.score(plain).items()}
        if self.monitor not in metrics:
            raise MmgrError(f"training.monitor={self.monitor}: this model's validation gives "
                            f"{', '.join(metrics)} only")
        score, best = metrics[self.monitor], state["best_score"]
        better = improves(score, best, self.monitor)
        recorded = {f"valid_{key}": value for key, value in metrics.items()}       # valid_ndcg@10, valid_loss
        state["history"].append({"epoch": state["epoch"], "step": state["step"], **recorded,
                                 "train_seconds": round(state["seen"]["seconds"], 3),
                                 "samples": state["seen"]["samples"], "target_tokens": state["seen"]["tokens"],
                                 **machine_load()})
        self.fabric.log_dict({f"valid/{key}": value for key, value in metrics.items()}, state["step"])
        if self.fabric.is_global_zero:
            seen, ranks = state["seen"], self.fabric.world_size         # `seen` counts this rank's share
            loss = f"train loss {mean_loss:.4f} since the last validation, " if mean_loss is not None else ""
            shown = ", ".join(f"valid {key} {value:.4f}" for key, value in metrics.items())
            log.info("validation: epoch %d, step %d/%d, %s%s (best %s %.4f at epoch %d), %s%s samples in %.0f s of "
                     "training (%.0f/s)%s", state["epoch"], state["step"], state["schedule_steps"], shown,
                     " new best" if better else "", self.monitor, score if better else best,
                     state["epoch"] if better else state["best_epoch"], loss, f"{seen['samples'] * ranks:,}",
                     seen["seconds"], seen["samples"] * ranks / max(seen["seconds"], 1e-9),
                     time_left(state, self.since))
        if better:
            state.update(best_score=score, best_epoch=state["epoch"], stale=0)
            if self.fabric.is_global_zero:
                save_weights(self.output, plain, {**self.weights_info, "epoch": state["epoch"], **recorded})
        elif state["step"] > self.warmup:
            state["stale"] += 1
        self.fabric.barrier()

    def keep_final(self, model: torch.nn.Module, state: dict) -> None:
        if self.fabric.is_global_zero:
            save_weights(self.output, _unwrap(model), {**self.weights_info, "epoch": state["epoch"],
                                                       "step": state["step"]})
        self.fabric.barrier()


def _checkpoint(fabric: Fabric, path: Path, model, optimizer, scheduler, state: dict) -> None:
    if fabric.is_global_zero:
        save_checkpoint(path, _unwrap(model), optimizer, scheduler, state)
    fabric.barrier()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, "module", model)           # Fabric wrapper
    return getattr(inner, "module", inner)            # DDP wrapper


def _my_batches(order: list[Any], fabric: Fabric) -> list[Any]:
    """This process's share of the epoch's batch order (all of it on one device; equal counts on every rank)."""
    usable = len(order) // fabric.world_size * fabric.world_size
    return order[fabric.global_rank:usable:fabric.world_size]


def _loggers(log_dir: Path) -> list:
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    loggers: list = [CSVLogger(str(log_dir), name="csv", flush_logs_every_n_steps=1)]  # a version per invocation;
    # flushed at every logged row (Fabric's default flushes when (step + 1) % 100 == 0, which steps logged every 20
    # never meet: the file stayed empty until the stage ended)
    with contextlib.suppress(ModuleNotFoundError):  # tensorboard is optional
        loggers.append(TensorBoardLogger(str(log_dir), name="tensorboard"))
    return loggers


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seeded_sample(count: int, size: int, seed: int) -> np.ndarray:
    """A fixed, sorted sample of `size` indices out of `count` (all when size is 0 or too large)."""
    if size == 0 or size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))
