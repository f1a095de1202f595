"""Memory a training run will need, estimated from the files before anything loads."""

from __future__ import annotations

from pathlib import Path

from hubkit.errors import CheckpointError

GB = 1024**3


def weight_bytes(folder: Path) -> int:
    """Bytes of the weight files in `folder` (safetensors; what loading it costs in its stored dtype)."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


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


def check_two_copies(av_dir: Path, reference: str, device: str = "cpu") -> None:
    """Refuse a full-weights GRPO whose policy, frozen reference and optimiser state cannot fit.

    A fully fine-tuned policy trains all weights (weights + gradients + two fp32 AdamW moments per
    parameter) and keeps a second, frozen model as its KL reference."""
    w = weight_bytes(av_dir)
    free = available_bytes(device)
    if w == 0 or free is None:
        return
    params = w / 2  # stored as bf16/fp16 (2 bytes) in hubkit checkpoints; an fp32 file only overestimates
    need = w + w + params * 2 + params * 8  # policy, reference, gradients, AdamW moments
    if need > free:
        raise CheckpointError(
            f"grpo: the AV in {av_dir} trains all weights ({w / GB:.1f} GB) and its KL reference "
            f"(`reference: {reference}`) is a second full copy: about {need / GB:.1f} GB with gradients and "
            f"optimiser state, but {device} has {free / GB:.1f} GB free. Train the AV as a LoRA adapter (one "
            "base, the reference is the frozen adapter), set `grpo.kl_coef: 0` (no reference), or use a "
            "larger device"
        )
