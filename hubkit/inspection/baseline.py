"""The predict-the-mean baseline ``B`` (for ``fve_nrm``) and the mean vector (for spliced loss) of an inspection.

``fve_nrm = 1 − mse_nrm / B`` needs the ``B`` of the NLA's training distribution. It is read from what
the release recorded (an eval.json's ``figures.round_trip.all.fve.baseline_b``, or a number given),
otherwise measured here on the bundled corpus at the NLA's layer, with extraction's own settings, and
every output says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hubkit.data.corpus import BUNDLED, load_corpus
from hubkit.data.extract import ExtractConfig, extract_documents
from hubkit.data.tables import vectors_numpy
from hubkit.errors import DataError
from hubkit.metrics import mean_baseline

CORPUS_DOCS = 32  # bundled documents the baseline is measured on (8 positions each)


@dataclass
class Baseline:
    b: float | None
    source: str  # "given", "eval.json <path>", "bundled corpus (N vectors at layer L)"
    mean: torch.Tensor | None = None  # raw mean vector [d], when measured


def from_eval_json(path: str | Path) -> float:
    """``B`` recorded in an eval.json (``figures.round_trip.all.fve.baseline_b``)."""
    path = Path(path)
    try:
        b = json.loads(path.read_text())["figures"]["round_trip"]["all"]["fve"]["baseline_b"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: no figures.round_trip.all.fve.baseline_b in it ({type(exc).__name__}); "
            "give an eval.json written by `hubkit eval`"
        ) from exc
    return check_b(b, str(path))


def check_b(b: object, where: str) -> float:
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not np.isfinite(b) or b <= 0:
        raise DataError(f"{where}: the predict-the-mean baseline B must be a positive number, got {b!r}")
    return float(b)


def measure(model: nn.Module, tokenizer, layer: int, n_docs: int = CORPUS_DOCS) -> Baseline:
    """``B`` and the mean vector of layer-`layer` vectors extracted from the bundled corpus."""
    docs = load_corpus(BUNDLED).documents[:n_docs]
    table = extract_documents(model, tokenizer, docs, ExtractConfig(layer=layer))
    d = table.schema.field("vector").type.list_size
    v = torch.from_numpy(vectors_numpy(table.column("vector"), d).copy())
    return Baseline(
        b=mean_baseline(v),
        source=f"measured on the bundled corpus ({len(v)} vectors from {len(docs)} documents at layer {layer})",
        mean=v.double().mean(dim=0).float(),
    )
