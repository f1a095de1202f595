"""The parts every training stage shares: processes, run folder, resume, gradient sync, logs, checkpoints.

Under ``accelerate launch`` each process takes its round-robin share of every global step's
micro-batches and gradients are summed by hand (one flat all-reduce), each loss divided by the
*global* normaliser, so ``n`` processes with ``grad_accum = k`` compute the update of one with
``k·n``. Not DDP: the AR's forward stops early at block K and GRPO mixes generation with training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from hubkit.constants import METRICS_FILE, RECIPE_COPY
from hubkit.errors import CheckpointError, DataError, HubkitError
from hubkit.meta import NLAMeta
from hubkit.precision import apply_thread_policy_unless_set, check_device, resolve_dtype, resolve_dtype_name
from hubkit.train import distributed, fsdp, metas, trajectory
from hubkit.train.adapters import grad_norm_clip, make_optimizer, make_scheduler, trainable
from hubkit.train.data import Table, micro_batches, step_rows
from hubkit.train.recipe import Recipe, Stage, StageRecipe

log = logging.getLogger(__name__)

HANG_MESSAGE = "hubkit-train: hanging after step"


class TrainingDiverged(HubkitError, RuntimeError):
    """The loss or the gradient became NaN or infinite: the step is not applied and the run stops."""


def check_finite_weights(stage: str, step: int, last: Path | None, params: Iterable[nn.Parameter]) -> None:
    """Before a checkpoint is written: every trained weight finite, or the run stops (nothing written).

    Sharded weights are checked shard by shard and the verdict agreed by every rank."""
    if not fsdp.all_finite(params):
        raise TrainingDiverged(
            f"{stage} stopped at step {step}: the trained weights hold NaN or inf, so step {step} was not saved "
            f"and {trajectory.kept(last)}. Lower optim.lr or set optim.max_grad_norm"
        )


def check_finite_step(stage: str, step: int, last: Path | None, **values: float) -> None:
    """Stop the run (before the optimiser step) when any of `values` is NaN or infinite."""
    shown = ", ".join(f"{k} = {v}" for k, v in values.items() if not math.isfinite(v))
    if shown:
        raise TrainingDiverged(
            f"{stage} stopped at step {step}: {shown}; the step was not applied and {trajectory.kept(last)}. "
            "Lower optim.lr, set optim.max_grad_norm, or check the training data for extreme values"
        )


@dataclass
class Progress:
    """Where a stage's run stands between steps (restored on resume): what its next checkpoint records."""

    step: int
    tokens_seen: int
    parent: str  # what the next checkpoint descends from: the stage's init, then the last step's folder name
    last: Path | None  # the last checkpoint written or resumed from (None: none yet)


@dataclass
class RunOptions:
    """What the command line adds to a recipe for one run."""

    out: str | None = None
    data: str | None = None
    resume: bool = False
    resume_fallback: bool = False  # a damaged latest step is set aside and the newest intact one used
    resume_unverified: bool = False  # a step folder without its hash file may be resumed from
    allow_ood_injection: bool = False
    device: str | None = None
    hang_after_step: int | None = None  # test hook: block forever after this step (to be SIGKILLed)
    quiet: bool = False


class Task(Protocol):
    """What `Runner.resume` and `Runner.save_step` read of a stage (`SFTTask`, `grpo.GRPOTrainer`)."""

    stage_name: str
    loss_type: str
    init_parent: str
    table: Table
    params: list[nn.Parameter]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]

    def parts(self, training: dict[str, Any]) -> list[trajectory.Part]:
        """The halves a step folder holds, their metas' ``training`` set to `training`: what is saved
        and what a resume restores."""


class Runner:
    """One stage's process context: accelerator, run folder, resume state, logging and checkpointing."""

    def __init__(self, recipe: Recipe, stage: Stage, opts: RunOptions) -> None:
        from accelerate import Accelerator

        self.recipe, self.stage, self.opts = recipe, stage, opts
        self.cfg: StageRecipe = recipe.stage(stage)
        check_device(opts.device)
        # without an accelerator (CUDA, XPU, MPS) accelerate must be told cpu=True, or it ignores torchrun's
        # group and each rank trains alone
        self.acc = Accelerator(cpu=opts.device == "cpu" or not torch.accelerator.is_available())
        self.device = torch.device(opts.device) if opts.device not in (None, "cpu") else self.acc.device
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.dist = recipe.distributed
        distributed.ensure_process_group(self.dist.strategy, self.device)
        distributed.check_same_devices(self.device, self.world)
        self.run_dir = Path(opts.out) if opts.out else Path(recipe.output_dir) / stage
        self.dtype = resolve_dtype_name(recipe.dtype, self.device)
        threads = apply_thread_policy_unless_set(workers=int(os.environ.get("LOCAL_WORLD_SIZE", self.world)))
        log.info("%s: dtype %s (recipe: %s), %d torch threads", stage, self.dtype, recipe.dtype, threads)
        if not opts.quiet and self.is_main:
            print(
                f"[{stage}] dtype {self.dtype} (recipe: {recipe.dtype}), {threads} torch threads", flush=True
            )
        self.config_sha256 = recipe.config_sha256(stage, self.dtype)
        distributed.check_stage(
            self.dist, self.cfg, stage, self.world, self.device, self.dtype, recipe.base_model
        )
        self.resumed = self.open_run_dir()
        torch.manual_seed(recipe.seed)  # identical initialisation (LoRA, heads) on every process

    def open_run_dir(self) -> trajectory.Resumed | None:
        """Create the run folder (rank 0; half-written steps of a killed run removed), then the step to resume
        from: None for a new run, refused when the folder holds checkpoints and no resume was asked for."""
        run_dir, opts = self.run_dir, self.opts
        resume = opts.resume or opts.resume_fallback or opts.resume_unverified
        intact = None  # the state rank 0 read and verified while setting damaged steps aside
        if self.is_main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CheckpointError(f"{run_dir}: cannot create the run folder ({exc.strerror})") from exc
            for p in trajectory.clean_partials(run_dir):
                log.warning("removed a half-written checkpoint left by a killed run: %s", p)
            if resume and opts.resume_fallback:
                intact = trajectory.set_aside_damaged(run_dir, opts.resume_unverified)
        self.acc.wait_for_everyone()
        last = trajectory.latest_step(run_dir)
        if last is None:
            if resume:
                log.info("%s: no checkpoint to resume from; starting a new run", run_dir)
            return None
        if not resume:
            raise CheckpointError(
                f"{run_dir} already holds checkpoints (latest {last.name}); pass --resume to continue that run, "
                "or choose another output folder (--out)"
            )
        if intact is not None and intact.folder == last:
            return intact
        return trajectory.read_state(last, unverified_ok=opts.resume_unverified)

    @property
    def is_main(self) -> bool:
        return self.acc.is_main_process

    @property
    def per_step(self) -> int:
        """Rows of one optimiser step over every process."""
        return self.cfg.micro_batch_size * self.cfg.grad_accum * self.world

    @property
    def sharded(self) -> bool:
        return self.dist.strategy == "fsdp"

    def shard(self, model: nn.Module | None) -> nn.Module | None:
        """Shard `model` in place under ``strategy: fsdp`` (each block, then the root); unchanged otherwise."""
        if model is None or not self.sharded:
            return model
        mp = self.dist.mixed_precision
        param_dtype = None if mp == "none" else resolve_dtype(mp, self.device)
        return fsdp.shard(model, param_dtype, self.dist.reshard_after_forward)

    def data_path(self, what: str) -> str:
        """The stage's input table: ``--data``, else the recipe's ``<stage>.data``; `what` names it in the error."""
        data = self.opts.data or self.cfg.data
        if data is None:
            raise DataError(f"no {what} data: set `{self.stage}.data` in the recipe or pass --data")
        return data

    # -- data parallel -------------------------------------------------------------------------
    def my_micro_batches(self, rows: list[int], micro_batch_size: int) -> list[tuple[int, list[int]]]:
        """(global index, rows) of this process's micro-batches of a step."""
        mine = micro_batches(rows, micro_batch_size, self.rank, self.world)
        return [(self.rank + j * self.world, mb) for j, mb in enumerate(mine)]

    def sync_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Sum gradients over processes (no-op in a single process); FSDP has already reduced sharded ones."""
        if self.world > 1:
            sum_gradients(params)

    def reduce_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        return float(self.acc.reduce(t, reduction="sum").item())

    # -- logs and checkpoints ---------------------------------------------------------------------
    def log_step(self, metrics: dict[str, Any]) -> None:
        if not self.is_main:
            return
        if self.device.type == "cuda":  # the step's high-water mark on this process's GPU
            metrics = {**metrics, "peak_gpu_mb": torch.cuda.max_memory_allocated(self.device) / 2**20}
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(metrics) + "\n")
        step = metrics["step"]
        if not self.opts.quiet and (step % self.cfg.log_every == 0 or step == self.cfg.steps):
            shown = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
            )
            print(f"[{self.stage}] {shown}", flush=True)

    def resume(self, task: Task) -> tuple[Progress, dict[str, Any]]:
        """Where the run starts: step 0 from `task.init_parent`, or the resumed step (refused unless it
        continues this run) with its weights, optimisers and schedules restored; also the state's ``extra``.
        Metrics lines after the start are dropped."""
        r = self.resumed
        if r is None:
            progress, extra = Progress(0, 0, task.init_parent, None), {}
        else:
            trajectory.check_resumable(
                r, task.stage_name, self.config_sha256, task.table.sha256, self.per_step
            )
            trajectory.restore_parts(task.parts({}), r.folder)
            for name, optimizer in task.optimizers.items():
                optimizer.load_state_dict(r.optimizers[name])
                task.schedulers[name].load_state_dict(r.schedulers[name])
            log.info("resumed %s from %s (step %d)", task.stage_name, r.folder, r.state.step)
            progress = Progress(r.state.step, r.state.tokens_seen, r.folder.name, r.folder)
            extra = r.state.extra
        path = self.run_dir / METRICS_FILE
        if self.is_main:
            if path.exists():
                records = read_metrics_lines(path)
                warn_missing_steps(path, [step for _, step in records], progress.step)
                path.write_text("".join(line + "\n" for line, step in records if step <= progress.step))
            self.recipe.save(self.run_dir / RECIPE_COPY)
        return progress, extra

    def due(self, step: int) -> bool:
        """Whether step `step` writes a checkpoint (every ``checkpoint_every`` steps, and the last)."""
        return step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps

    def save_step(
        self, p: Progress, task: Task, loss: float, lr: float, extra: dict[str, Any] | None = None
    ) -> None:
        """Write checkpoint `p.step` (refused when a trained weight is not finite): the metas' ``training``
        record and the resume state from the same values. `task.parts` turns that record into the halves to
        save; `p` then names the new folder as the last one and the parent of the next."""
        stage_name, global_batch = task.stage_name, self.per_step
        check_finite_weights(stage_name, p.step, p.last, task.params)
        state = trajectory.TrainerState(
            stage=stage_name,
            step=p.step,
            total_steps=self.cfg.steps,
            loss=loss,
            lr=lr,
            tokens_seen=p.tokens_seen,
            seed=self.recipe.seed,
            data_sha256=task.table.sha256,
            config_sha256=self.config_sha256,
            parent=p.parent,
            global_batch=global_batch,
            world_size=self.world,
            extra=dict(extra or {}),
        )
        skip = ("total_steps", "global_batch", "world_size", "extra")  # the resume's, not the meta's
        training = {k: v for k, v in asdict(state).items() if k not in skip}
        training |= dict(loss_type=task.loss_type, global_batch_size=global_batch, dtype=self.dtype)
        folder = self.run_dir / trajectory.step_name(p.step)
        saved, optimizers, schedulers = task.parts(training), task.optimizers, task.schedulers
        if self.sharded:  # every rank takes part in gathering; rank 0 writes
            saved, optimizers = fsdp.gathered_for_checkpoint(saved, optimizers)
        if self.is_main:
            trajectory.write_step(self.run_dir, state, saved, optimizers, schedulers)
            if not self.opts.quiet:
                print(f"[{self.stage}] wrote {folder}", flush=True)
        self.acc.wait_for_everyone()
        p.last, p.parent = folder, folder.name

    def maybe_hang(self, step: int) -> None:
        if self.opts.hang_after_step is not None and step == self.opts.hang_after_step:
            print(f"{HANG_MESSAGE} {step}", flush=True)
            while True:  # the test kills this process with SIGKILL
                time.sleep(60)


def seed_micro(seed: int, step: int, micro: int) -> None:
    """Seed every generator from (seed, step, global micro-batch index) before that micro-batch runs.

    A micro-batch's randomness (dropout, sampling) then depends on neither earlier steps (exact
    resume) nor which process runs it (n processes = one process with n× the accumulation).
    """
    s = (seed * 1_000_003 + step * 7_919 + micro * 104_729) % (2**31)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)


def warn_missing_steps(path: Path, steps: list[int], start_step: int) -> None:
    """Say how many steps before the resume point have no record (a truncated or edited metrics.jsonl)."""
    missing = sorted(set(range(1, start_step + 1)) - set(steps))
    if missing:
        log.warning(
            "%s: %d of the %d steps before the resume point have no metrics record (first missing: step %d); "
            "the file was truncated or edited, and those rows stay missing",
            path,
            len(missing),
            start_step,
            missing[0],
        )


def sum_gradients(params: Iterable[nn.Parameter]) -> None:
    """Sum the gradients of `params` over the processes (one flat all-reduce); sharded (FSDP) gradients are
    left alone, FSDP has reduced them. A weight that no process used keeps no gradient, as in one process."""
    params = [p for p in params if p.requires_grad and not fsdp.is_dtensor(p)]
    if not params:
        return
    had = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(had, op=dist.ReduceOp.MAX)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1).float() for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, used in zip(params, had.tolist(), strict=True):
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad).to(p.grad.dtype))
        offset += n
        if not used:
            p.grad = None


def read_metrics_lines(path: Path) -> list[tuple[str, int]]:
    """(line, step) of each record in a run's metrics.jsonl.

    A partial last line (a run killed while writing it) is dropped with a warning; any other line
    that is not a JSON record with a `step` is a `CheckpointError` naming the file and line.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); move it aside to resume") from exc
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):
                log.warning(
                    "%s: dropped a partial last line (%d characters) left by a killed run", path, len(line)
                )
                continue
            raise CheckpointError(
                f"{path}: line {number} is not a metrics record ({exc}); repair or move the file aside to resume"
            ) from exc
        out.append((line, step))
    return out


# -- supervised fine-tuning loop (AV and AR) ---------------------------------------------------------
class SFTTask(Task):
    """A supervised stage (AV or AR) as `run_sft` trains it: a subclass sets the model (and head), meta,
    tokenizer and table, and defines the normaliser, token count and summed loss of its rows (`run_sft`
    sets the params, optimisers and schedulers)."""

    model: nn.Module
    tokenizer: Any
    meta: NLAMeta
    head: nn.Linear | None = None
    adapter_name: str | None = None

    def param_groups(self) -> list[dict]:
        return [{"params": trainable(self.model)}]

    def parts(self, training: dict[str, Any]) -> list[trajectory.Part]:
        meta = metas.with_training(self.meta, **training)
        return [
            trajectory.Part(self.model, self.tokenizer, meta, head=self.head, adapter_name=self.adapter_name)
        ]

    def normaliser(self, rows: list[int]) -> float:
        raise NotImplementedError

    def tokens(self, rows: list[int]) -> int:
        raise NotImplementedError

    def micro_loss(self, rows: list[int]) -> Tensor:
        raise NotImplementedError


def run_sft(task: SFTTask, runner: Runner, on_step: Callable[[dict], None] | None = None) -> Path:
    """Train `task` for the stage's steps, writing trajectory checkpoints; returns the last step folder."""
    cfg, recipe = runner.cfg, runner.recipe
    groups = task.param_groups()
    task.params = [p for g in groups for p in g["params"]]
    optimizer = make_optimizer(groups, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim, cfg.steps)
    task.optimizers, task.schedulers = {"main": optimizer}, {"main": scheduler}
    p, _ = runner.resume(task)
    if p.step >= cfg.steps:
        log.info("%s: already at step %d of %d; nothing to do", runner.run_dir, p.step, cfg.steps)
        return p.last if p.last is not None else runner.run_dir
    for step in range(p.step + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        rows = step_rows(len(task.table), recipe.seed, step - 1, runner.per_step)
        norm = task.normaliser(rows)
        for m in (task.model, task.head):
            if m is not None:
                m.train()
        total = 0.0
        for index, mb in runner.my_micro_batches(rows, cfg.micro_batch_size):
            seed_micro(recipe.seed, step, index)
            with runner.acc.autocast():
                loss_sum = task.micro_loss(mb)
            (loss_sum / norm).backward()
            total += float(loss_sum.detach())
        runner.sync_grads(task.params)
        grad_norm = grad_norm_clip(task.params, cfg.optim.max_grad_norm)
        loss = runner.reduce_sum(total) / norm
        check_finite_step(task.stage_name, step, p.last, loss=loss, grad_norm=grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        p.step, p.tokens_seen = step, p.tokens_seen + task.tokens(rows)
        metrics = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_seen": p.tokens_seen,
            "seconds": time.perf_counter() - t0,
        }
        runner.log_step(metrics)
        if on_step is not None:
            on_step(metrics)
        if runner.due(step):
            runner.save_step(p, task, loss, lr)
        runner.maybe_hang(step)
    assert p.last is not None
    return p.last
