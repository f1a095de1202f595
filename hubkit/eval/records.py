"""What an eval read, as eval.json records it: the NLA's facts from its metas, hashes of checkpoint folders
and of the eval table; loading a pair."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from hubkit import loading
from hubkit.eval.report import checkpoint_record
from hubkit.eval.table import EvalTable
from hubkit.meta import NLAMeta
from hubkit.pair import NLAPair
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)


def nla_record(av: NLAMeta, ar: NLAMeta, shared_base: bool | None = None) -> dict:
    """What was evaluated, from the two metas (the facts a card states next to the numbers)."""
    return {
        "base_model": av.base_model,
        "layer": av.layer,
        "d_model": av.d_model,
        "mse_scale": ar.mse_scale_value(),
        "injection": {"scheme": av.injection.scheme, "scale": av.injection_scale_value()},
        "av_chat_template": av.av.chat_template,
        "ar_num_layers": ar.ar.num_layers,
        "shared_base": shared_base,
        "retracted": {"av": av.retracted is not None, "ar": ar.retracted is not None},
    }


def checkpoint_records(checkpoints: Mapping[str, str | Path | dict] | None) -> dict:
    if not checkpoints:
        log.warning("no checkpoint folders given: eval.json will not tie its numbers to weight files")
        return {}
    return {k: (v if isinstance(v, dict) else checkpoint_record(v)) for k, v in checkpoints.items()}


def base_record(av_dir: Path, ar_dir: Path, base_model: str | None) -> dict | None:
    """Hashes of the base-model folder when either half is an adapter over a local base, else ``None``."""
    adapters = [d for d in (av_dir, ar_dir) if loading.is_adapter(d)]
    if not adapters:
        return None
    base = loading.resolve_base(base_model or NLAMeta.load(adapters[0]).base_model)
    return checkpoint_record(base) if Path(base).is_dir() else {"path": base, "files": {}}


def load_pair(
    av_dir: Path,
    ar_dir: Path,
    base_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> NLAPair:
    return NLAPair.from_pretrained(av=av_dir, ar=ar_dir, base_model=base_model, device=device, dtype=dtype)


def table_record(table: EvalTable, selected: EvalTable | None = None, selection: dict | None = None) -> dict:
    """The eval table as eval.json records it: where, its hash, its sidecar and, given, which rows were read."""
    rec: dict = {
        "path": str(table.path) if table.path else None,
        "sha256": table.sha256,
        "rows_total": len(table),
    }
    if selected is not None:
        rec |= {"rows_evaluated": len(selected), "selection": selection, "width": table.width}
        rec["has_reference_explanations"] = selected.explanations is not None
    side = table.sidecar_path
    return rec | {"sidecar": {"path": str(side), "sha256": sha256_file(side)} if side else None}
