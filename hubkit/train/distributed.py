"""What the recipe's ``distributed:`` section asks for, checked before a run loads a model: a process
group, the batch split, the fit in memory (and the second copy a full-weights GRPO keeps), and a lost
process reported with the checkpoint to resume from.

``ddp`` keeps a whole copy per process and sums gradients by hand (`hubkit.train.loop`); ``fsdp`` shards
with FSDP2 (`hubkit.train.fsdp`). ``global_batch_size`` fixes the rows of one optimiser step whatever the
number of processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from hubkit import loading
from hubkit.errors import CheckpointError, HubkitError
from hubkit.train import trajectory
from hubkit.train.recipe import DistributedRecipe

log = logging.getLogger(__name__)


class DistributedError(HubkitError, ValueError):
    """A multi-process setup that cannot train: no process group, an indivisible batch, mixed devices,
    or a base that does not fit even sharded."""


# -- before anything loads ---------------------------------------------------------------------------
def ensure_process_group(strategy: str, device: torch.device) -> None:
    """fsdp needs a process group: join the launcher's (one process under torchrun too), or refuse."""
    if strategy != "fsdp" or (dist.is_available() and dist.is_initialized()):
        return
    if not all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        raise DistributedError(
            "distributed.strategy fsdp needs a process group, and this process was not started by a launcher: "
            "run `torchrun --nproc_per_node N -m hubkit.cli train ...` (N = 1 works) or `accelerate launch`, "
            "or set `distributed.strategy: ddp`"
        )
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def grad_accum_for(global_batch: int, micro_batch: int, world: int, where: str) -> int:
    """Per-process micro-batches of one step so that ``micro_batch x accum x world == global_batch``."""
    if global_batch % (micro_batch * world):
        raise DistributedError(
            f"{where}: distributed.global_batch_size {global_batch} is not a multiple of micro_batch_size "
            f"{micro_batch} x {world} processes; choose a global batch divisible by {micro_batch * world} or "
            "launch another number of processes"
        )
    return global_batch // (micro_batch * world)


def check_same_devices(device: torch.device, world: int) -> None:
    """Every process on the same kind of device (a CPU rank beside GPU ranks would stall every collective)."""
    if world == 1 or not dist.is_initialized():
        return
    kinds: list[Any] = [None] * world
    dist.all_gather_object(kinds, device.type)
    if len(set(kinds)) > 1:
        shown = ", ".join(f"rank {i} {k}" for i, k in enumerate(kinds))
        raise DistributedError(
            f"the processes run on different kinds of device ({shown}); give every process the same --device "
            "(or none) so each one trains on its own GPU, or all on CPU"
        )


def check_stage(
    cfg: DistributedRecipe, stage_cfg: Any, stage: str, world: int, device, dtype: str, base: str
) -> None:
    """Before a stage loads anything: set ``grad_accum`` from ``global_batch_size`` (after the config hash,
    so the recipe hashes the same on any number of processes), refuse QLoRA under fsdp, and refuse a base
    that cannot fit."""
    gb = cfg.global_batch_size
    if gb is not None:
        accum = grad_accum_for(gb, stage_cfg.micro_batch_size, world, f"recipe stage `{stage}`")
        if accum != stage_cfg.grad_accum:
            log.info("%s: grad_accum %d from global_batch_size %d on %d processes", stage, accum, gb, world)
        stage_cfg.grad_accum = accum
    if cfg.strategy == "fsdp" and stage_cfg.adapter.kind == "qlora":
        raise DistributedError(
            f"recipe stage `{stage}`: adapter.kind qlora cannot be sharded by distributed.strategy fsdp "
            "(bitsandbytes 4-bit weights are not FSDP2 parameters); use adapter.kind lora under fsdp, or "
            "strategy ddp for a QLoRA"
        )
    engine = getattr(stage_cfg, "rollout_engine", "transformers")
    if cfg.strategy == "fsdp" and engine not in ("transformers", "auto"):
        raise DistributedError(
            f"recipe stage `{stage}`: rollout_engine {engine} cannot take a sharded policy's adapter; under "
            "distributed.strategy fsdp rollouts are sampled in process (rollout_engine: transformers)"
        )
    check_fits(cfg, base, dtype, stage_cfg.adapter.kind, world, device)


# -- the fit estimate -------------------------------------------------------------------------------
DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}
NF4_BYTES = 0.5 + 4 / 64  # 4-bit weights plus one fp32 absmax per 64-value block
ADAMW_STATE_BYTES = 8.0  # exp_avg and exp_avg_sq in float32


def count_parameters(base_path: str) -> int:
    """Parameters of the base at `base_path`, counted on the meta device (nothing is loaded)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_path)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def estimate(
    parameters: int, dtype: str, adapter_kind: str, world: int, strategy: str, lora_fraction: float = 0.01
) -> float:
    """Bytes one process holds for weights, gradients and optimiser state (no activations): full fine-tuning keeps weights, gradients and two AdamW moments for every
    parameter; a LoRA keeps the (frozen) weights and trains about `lora_fraction` of that count.
    ``fsdp`` divides everything by the processes; ``ddp`` keeps it all on each."""
    w = NF4_BYTES if adapter_kind == "qlora" else DTYPE_BYTES[dtype]
    trained = parameters if adapter_kind == "full" else int(parameters * lora_fraction)
    total = parameters * w + trained * (DTYPE_BYTES[dtype] + ADAMW_STATE_BYTES)
    if adapter_kind != "full":
        total += trained * DTYPE_BYTES[dtype]  # the adapter's own weights
    return total / (world if strategy == "fsdp" else 1)


def check_fits(cfg: DistributedRecipe, base: str, dtype: str, adapter_kind: str, world: int, device) -> None:
    """Refuse, before loading, a base whose weights and optimiser state alone exceed one device's memory."""
    if cfg.device_memory_gb is not None:
        memory = cfg.device_memory_gb * 1e9
    elif device.type == "cuda":
        memory = float(torch.cuda.get_device_properties(device).total_memory)
    else:
        return
    base_path = loading.resolve_base(base)
    params = count_parameters(base_path)
    est = estimate(params, dtype, adapter_kind, world, cfg.strategy)
    log.info(
        "fit estimate: %.2f GiB of weights, gradients and optimiser state per process (%d processes, %s)",
        est / 2**30,
        world,
        cfg.strategy,
    )
    if est > memory:
        need = int(-(-est * world // memory)) if cfg.strategy == "fsdp" else None
        more = (
            f"shard over at least {need} processes of this size"
            if need
            else "set `distributed.strategy: fsdp` to shard it"
        )
        raise DistributedError(
            f"{base_path}: {params / 1e9:.2f}B parameters, {adapter_kind} in {dtype}, need about "
            f"{est / 1e9:.1f} GB per process ({world} process(es), {cfg.strategy}) before "
            f"activations, and one device has {memory / 1e9:.1f} GB; {more}, or train a LoRA/QLoRA"
        )


# -- a full-weights GRPO: two copies of the AV -----------------------------------------------------
GB = 1024**3


def available_bytes(device: str = "cpu") -> int | None:
    """Memory free for a new allocation on `device`: MemAvailable on Linux CPUs, free memory on CUDA."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_two_copies(av_dir: Path, reference: str, dtype: str, device: str = "cpu") -> None:
    """Refuse a full-weights GRPO whose policy (`estimate`), optimiser state and second, frozen copy (the KL
    reference) cannot fit."""
    free = available_bytes(device)
    if free is None:
        return
    params = count_parameters(str(av_dir))
    weights = params * DTYPE_BYTES[dtype]
    need = estimate(params, dtype, "full", 1, "ddp") + weights  # + the reference
    if need > free:
        raise CheckpointError(
            f"grpo: the AV in {av_dir} trains all weights ({weights / GB:.1f} GB) and its KL reference "
            f"(`reference: {reference}`) is a second full copy: about {need / GB:.1f} GB with gradients and "
            f"optimiser state, but {device} has {free / GB:.1f} GB free. Train the AV as a LoRA adapter (one "
            "base, the reference is the frozen adapter), set `grpo.kl_coef: 0` (no reference), or use a "
            "larger device"
        )


# -- a process of the run lost --------------------------------------------------------------------------
class RunStopped(HubkitError, RuntimeError):
    """Another process of a multi-process run failed (or the launcher stopped this one)."""


class _Terminated(BaseException):
    """SIGTERM arrived: the launcher is tearing the run down after another process failed."""


def _is_collective_failure(exc: BaseException) -> bool:
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection closed")
    )


@contextlib.contextmanager
def stop_report(run_dir: Path, stage: str) -> Iterator[None]:
    """Turn the loss of another process (a failed collective, or the launcher's SIGTERM) into one
    `RunStopped` line naming the last complete checkpoint of `run_dir`, from which ``--resume`` continues."""
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1

    def on_term(signum, _frame):
        raise _Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_term) if multi else None
    try:
        yield
    except BaseException as exc:
        if not (isinstance(exc, _Terminated) or (multi and _is_collective_failure(exc))):
            raise
        why = (
            f"the launcher sent {exc} after another process of the run failed"
            if isinstance(exc, _Terminated)
            else f"a collective failed ({' '.join(str(exc).split())[:160]})"
        )
        kept = trajectory.kept(trajectory.latest_step(run_dir))
        raise RunStopped(
            f"{stage} stopped: {why}; {kept}; run the same command with --resume to continue from it"
        ) from None
    finally:
        if multi:
            signal.signal(signal.SIGTERM, previous)
