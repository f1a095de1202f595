"""Whether a meta's layer (and an AR's kept blocks) fit in the model it runs on; read from config
files and the offline registry, without loading weights or torch."""

from __future__ import annotations

from pathlib import Path

from hubkit import constants as C
from hubkit.identity import config_depth
from hubkit.meta.record import NLAMeta
from hubkit.model_registry import find


def base_blocks(folder: Path | None, base: str) -> tuple[int, str] | None:
    """(number of decoder blocks, what they belong to): the checkpoint's own weights when it holds a
    full model, else the base (a local folder or an offline registry model); None when unknown here."""
    if folder is not None and not (folder / C.ADAPTER_CONFIG_FILE).exists():
        n = config_depth(folder)
        if n is not None:
            return n, f"the checkpoint's model ({folder / C.MODEL_CONFIG_FILE})"
    if base and Path(base).expanduser().is_dir():
        n = config_depth(Path(base).expanduser())
        if n is not None:
            return n, f"the base model {base}"
    spec = find(base) if base else None
    if spec is not None:
        return spec.n_layers, f"the base model {spec.name}"
    return None


def depth_problem(meta: NLAMeta, n_blocks: int, what: str) -> str | None:
    """Why `meta` cannot run on a model of `n_blocks` decoder blocks (None when it can)."""
    if meta.layer is not None and meta.layer >= n_blocks:
        return (
            f"field `layer` is {meta.layer} but {what} has {n_blocks} blocks (layers 0..{n_blocks - 1}); "
            "the meta belongs to a deeper base, or its layer is wrong"
        )
    if meta.role == "ar" and meta.ar is not None and meta.ar.num_layers and meta.ar.num_layers > n_blocks:
        return (
            f"field `ar.num_layers` is {meta.ar.num_layers} (kept blocks) but {what} has {n_blocks} blocks; "
            "the meta belongs to a deeper base, or its depth is wrong"
        )
    return None
