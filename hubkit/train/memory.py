"""Whether a full-weights GRPO fits, estimated before anything loads (`distributed.estimate` counts the bytes)."""

from __future__ import annotations

from pathlib import Path

from hubkit.errors import CheckpointError

GB = 1024**3


def available_bytes(device: str = "cpu") -> int | None:
    """Memory free for a new allocation on `device`: MemAvailable on Linux CPUs, free memory on CUDA."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_two_copies(av_dir: Path, reference: str, dtype: str, device: str = "cpu") -> None:
    """Refuse a full-weights GRPO whose policy, frozen reference and optimiser state cannot fit.

    A fully fine-tuned policy trains all weights (`distributed.estimate`: weights, gradients and two
    fp32 AdamW moments per parameter) and keeps a second, frozen copy of its weights as KL reference."""
    from hubkit.train.distributed import DTYPE_BYTES, count_parameters, estimate

    free = available_bytes(device)
    if free is None:
        return
    params = count_parameters(str(av_dir))
    weights = params * DTYPE_BYTES[dtype]
    need = estimate(params, dtype, "full", 1, "ddp").bytes_per_process + weights  # + the reference
    if need > free:
        raise CheckpointError(
            f"grpo: the AV in {av_dir} trains all weights ({weights / GB:.1f} GB) and its KL reference "
            f"(`reference: {reference}`) is a second full copy: about {need / GB:.1f} GB with gradients and "
            f"optimiser state, but {device} has {free / GB:.1f} GB free. Train the AV as a LoRA adapter (one "
            "base, the reference is the frozen adapter), set `grpo.kl_coef: 0` (no reference), or use a "
            "larger device"
        )
