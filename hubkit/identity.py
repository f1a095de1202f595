"""Base-model identity: `same_base`, the one definition of "same base model" (registry names, their
Hub ids and aliases map to one key; other names compare by last path segment, case-insensitively), and
`Architecture`, by which bases recorded as paths on a training machine compare. No torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.model_registry import find


def base_key(name: str) -> str:
    """One key per base model (see the module docstring)."""
    spec = find(name) if name else None
    return spec.name if spec is not None else name.rstrip("/").split("/")[-1].lower()


def hub_id(name: str) -> str:
    """The Hub id an offline registry name (or alias) stands for; any other name as given."""
    spec = find(name)
    return spec.hf_repo if spec is not None else name


def same_base(a: str, b: str) -> bool:
    return base_key(a) == base_key(b)


def is_machine_path(name: str) -> bool:
    """Whether `name` is a filesystem path or URL rather than a Hub id or registry name."""
    path_like = "://" in name or "\\" in name or name.startswith(("/", "~", "./", "../"))
    return bool(name) and (path_like or name.count("/") > 1)


def public_base(name: str) -> str | None:
    """The Hub id to publish for base `name`; None for a local path that names nothing off this machine."""
    if not name:
        return None
    if not is_machine_path(name):
        return hub_id(name)
    marker = Path(name).expanduser() / C.MODEL_MARKER_FILE  # a hubkit model cache folder's record
    try:
        repo = json.loads(marker.read_text()).get("spec", {}).get("hf_repo")
    except (ValueError, OSError, AttributeError):
        return None
    return repo if isinstance(repo, str) and repo else None


def missing_local_path(name: str) -> bool:
    """A path-like name (not a Hub id) that does not exist on this machine."""
    return is_machine_path(name) and "://" not in name and not Path(name).expanduser().exists()


@dataclass(frozen=True)
class Architecture:
    """What makes two checkpoints share a base: family, width, depth, vocabulary and tokenizer."""

    model_type: str
    d_model: int
    n_layers: int
    vocab_size: int
    tokenizer: str | None  # sha256 of the tokenizer's vocabulary and merges, when a file holds them

    def describe(self) -> str:
        shape = f"{self.model_type}, d_model {self.d_model}, {self.n_layers} blocks, vocab {self.vocab_size}"
        return f"{shape}, tokenizer {self.tokenizer[:12] if self.tokenizer else 'unknown'}"


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    text = cfg.get("text_config")
    return text if isinstance(text, dict) and "hidden_size" in text else cfg


def read_architecture(folder: str | Path) -> Architecture | None:
    """The architecture of the model in `folder` (its config.json and tokenizer), or None without one."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / C.MODEL_CONFIG_FILE).read_text())
        text = _text_config(cfg)
        return Architecture(
            model_type=str(text.get("model_type", cfg.get("model_type"))),
            d_model=int(text["hidden_size"]),
            n_layers=int(text["num_hidden_layers"]),
            vocab_size=int(text.get("vocab_size", cfg.get("vocab_size", 0))),
            tokenizer=tokenizer_digest(folder),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tokenizer_digest(folder: Path) -> str | None:
    """sha256 of the tokenizer's model (vocabulary and merges), ignoring padding/truncation settings."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        try:
            model = json.loads(tj.read_text()).get("model")
        except (OSError, ValueError):
            return None
        blob = json.dumps(model, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()
    sp = folder / "tokenizer.model"
    if sp.is_file():
        return hashlib.sha256(sp.read_bytes()).hexdigest()
    return None


def architecture_problems(av: Architecture, ar: Architecture, ar_kept_blocks: int | None) -> list[str]:
    """Why an AV and an AR on these architectures cannot share a base ([] when they can)."""
    problems = []
    for name in ("model_type", "d_model", "vocab_size"):
        if getattr(av, name) != getattr(ar, name):
            problems.append(f"{name}: AV {getattr(av, name)} vs AR {getattr(ar, name)}")
    kept = ar_kept_blocks if ar_kept_blocks is not None else ar.n_layers
    if kept > av.n_layers or kept > ar.n_layers:
        problems.append(f"depth: the AR keeps {kept} blocks, the AV's base has {av.n_layers}")
    if av.tokenizer and ar.tokenizer and av.tokenizer != ar.tokenizer:
        problems.append("tokenizer: the vocabularies differ")
    return problems


def base_blocks(folder: Path | None, base: str) -> tuple[int, str] | None:
    """(decoder blocks, whose): the checkpoint's full model, else its base's; None when unknown here."""
    own = folder is not None and not (folder / C.ADAPTER_CONFIG_FILE).exists()
    if own and (n := config_depth(folder)) is not None:
        return n, f"the checkpoint's model ({folder / C.MODEL_CONFIG_FILE})"
    if base and (n := config_depth(Path(base).expanduser())) is not None:
        return n, f"the base model {base}"
    spec = find(base) if base else None
    return (spec.n_layers, f"the base model {spec.name}") if spec is not None else None


def config_depth(folder: Path) -> int | None:
    """`num_hidden_layers` of the model config in `folder` (its text tower's for multimodal configs)."""
    try:
        cfg = json.loads((folder / C.MODEL_CONFIG_FILE).read_text())
        return int(_text_config(cfg)["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
