"""Writing NLA checkpoints in hubkit's layout (atomically: a temp folder renamed into place).

AV: adapter (``adapter_config.json`` + ``adapter_model.safetensors``) or full weights, tokenizer,
``nla_meta.yaml``. AR: the same plus ``value_head.safetensors``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch import nn

from hubkit import heads
from hubkit.meta import NLAMeta


def _save_weights(model: nn.Module, tokenizer, folder: Path, adapter_name: str | None) -> None:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        names = [adapter_name] if adapter_name else None
        model.save_pretrained(str(folder), selected_adapters=names)
        if adapter_name and adapter_name != "default" and (folder / adapter_name).is_dir():
            # peft nests non-default adapters in a subfolder; keep the files at the top level.
            for f in (folder / adapter_name).iterdir():
                f.replace(folder / f.name)
            (folder / adapter_name).rmdir()
    else:
        model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def write_checkpoint(
    folder: str | Path,
    model: nn.Module,
    tokenizer,
    meta: NLAMeta,
    head: nn.Linear | None = None,
    adapter_name: str | None = None,
    legacy_pt: bool = False,
) -> Path:
    """Write one checkpoint folder atomically; an existing folder of that name is replaced whole."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _save_weights(model, tokenizer, tmp, adapter_name)
        if head is not None:
            heads.save_head(head, tmp)
            if legacy_pt:
                heads.save_legacy_pt(head, tmp)
        meta.save(tmp / "nla_meta.yaml")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
