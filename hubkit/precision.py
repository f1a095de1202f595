"""Precision and thread policy chosen from the hardware, never assumed.

bfloat16 only where the hardware has it natively: emulated bf16 measured 7x slower forward, 19x slower
forward+backward on SmolLM2-135M.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

from hubkit.errors import HubkitError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


class PrecisionError(HubkitError, ValueError):
    """A dtype or device that this machine or hubkit cannot use."""


def normalise_dtype_name(name: str) -> str:
    """`"bf16"` → `"bfloat16"`; refuse anything outside `DTYPE_CHOICES` with the valid names."""
    key = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in DTYPE_CHOICES:
        raise PrecisionError(f"unknown dtype {name!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    return key


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where oneDNN reports native bf16 support on this CPU (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without mkldnn
        return False


@functools.cache
def _auto_name(device_type: str) -> str:
    import torch

    if device_type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        name, why = ("bfloat16", "GPU supports bf16") if bf16 else ("float16", "GPU lacks bf16")
    elif device_type == "cpu":
        slow = "CPU has no native bf16 (emulated bf16 is 7-19x slower)"
        name, why = ("bfloat16", "CPU has native bf16") if cpu_has_native_bf16() else ("float32", slow)
    else:
        name, why = "float32", f"device type {device_type!r}"
    log.info("dtype auto → %s on %s (%s)", name, device_type, why)
    return name


def resolve_dtype_name(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> str:
    """The concrete dtype name for `dtype` (None and "auto" choose from the hardware)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    name = normalise_dtype_name(dtype or "auto")
    if name == "auto":
        default = "cuda" if torch.cuda.is_available() else "cpu"
        return _auto_name(torch.device(device).type if device is not None else default)
    return name


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype:
    """The torch dtype for `dtype` on `device` ("auto"/None → chosen from the hardware)."""
    import torch

    return getattr(torch, resolve_dtype_name(dtype, device))


def check_device(device: str | None) -> str | None:
    """Refuse a device this torch build cannot use, with what to do instead."""
    if device is None:
        return None
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise PrecisionError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise PrecisionError(
            f"--device {device}: this torch build sees no CUDA GPU; use --device cpu (or omit it)"
        )
    return device


def physical_cores() -> int:
    """Physical cores available to this process (affinity-aware; SMT siblings counted once)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{base}/physical_package_id") as pkg, open(f"{base}/core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            cores.add(("?", str(cpu)))
    return max(1, len(cores))


def threads_per_worker(workers: int = 1) -> int:
    """Torch threads for each of `workers` processes: never more threads than cores in total."""
    return max(1, physical_cores() // max(1, workers))


def apply_thread_policy(workers: int = 1) -> int:
    """Set torch's intra-op threads by the policy and return the number set."""
    import torch

    if torch.get_num_threads() != (n := threads_per_worker(workers)):
        torch.set_num_threads(n)
    return n


def apply_thread_policy_unless_set(workers: int = 1) -> int:
    """`apply_thread_policy(workers)`, unless `OMP_NUM_THREADS` is set: then the user chose (and torch
    already follows it); returns the threads in use. Forked workers set it to 1 to stay fork-safe."""
    import torch

    return torch.get_num_threads() if os.environ.get("OMP_NUM_THREADS") else apply_thread_policy(workers)
