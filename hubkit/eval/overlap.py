"""Held-out or not: the eval table's documents against every training document hubkit can find.

Training documents come from the tables given (``--train-table``) and from the eval table's sidecar
(the other splits' ``split.doc_ids``, or a flat ``train_doc_ids`` list). Overlap is refused unless forced,
and eval.json records what was compared.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hubkit.errors import DataError
from hubkit.eval.table import EvalTable
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

# Flat sidecar keys that may list the documents the NLA was trained on (besides `split.doc_ids`).
TRAIN_ID_KEYS = ("train_doc_ids", "training_doc_ids")


@dataclass
class Overlap:
    """Whether eval documents were also training documents, and what was compared."""

    checked: bool
    sources: list[dict]  # [{path, sha256, n_docs}] or [{sidecar key, n_docs}]
    n_train_docs: int
    n_overlap_docs: int
    n_overlap_rows: int
    examples: list[str]
    forced: bool


def train_doc_ids(path: str | Path) -> set[str]:
    """The `doc_id` set of a training table (a parquet file, or every parquet in a folder)."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"{path}: no training table (parquet file or folder of parquet files) there")
    ids: set[str] = set()
    for f in files:
        try:
            t = pq.read_table(str(f), columns=["doc_id"])
        except Exception as exc:
            raise DataError(f"{f}: cannot read a `doc_id` column from this training table ({exc})") from exc
        ids.update(str(d) for d in t.column("doc_id").to_pylist() if d is not None)
    return ids


def sidecar_train_ids(sidecar: dict) -> dict[str, set[str]]:
    """Training doc ids a sidecar lists: the other splits' ``split.doc_ids`` (hubkit.data), or a flat list."""
    out: dict[str, set[str]] = {}
    split = sidecar.get("split")
    if isinstance(split, dict) and isinstance(split.get("doc_ids"), dict):
        own = split.get("name")
        for name, ids in split["doc_ids"].items():
            if name != own and isinstance(ids, list):
                out[f"split.doc_ids.{name}"] = {str(d) for d in ids}
    for key in TRAIN_ID_KEYS:
        if isinstance(sidecar.get(key), list):
            out[key] = {str(d) for d in sidecar[key]}
    return out


def check_overlap(table: EvalTable, train_tables=(), force: bool = False) -> Overlap:
    """Compare eval `doc_id`s with the training tables' (and any the sidecar lists); refuse overlap unless forced."""
    sources: list[dict] = []
    train: set[str] = set()
    for p in train_tables:
        ids = train_doc_ids(p)
        p = Path(p)
        sources.append(
            {"path": str(p), "sha256": sha256_file(p) if p.is_file() else None, "n_docs": len(ids)}
        )
        train |= ids
    for key, listed in sidecar_train_ids(table.sidecar or {}).items():
        sources.append({"sidecar": str(table.sidecar_path), "key": key, "n_docs": len(listed)})
        train |= listed
    if not sources:
        log.warning(
            "no training tables given: the eval table's overlap with training documents is NOT checked"
        )
        return Overlap(False, [], 0, 0, 0, [], force)
    eval_docs = set(table.doc_ids)
    both = sorted(eval_docs & train)
    n_rows = sum(1 for d in table.doc_ids if d in train)
    if both and not force:
        raise DataError(
            f"{table.path}: {len(both)} of its {len(eval_docs)} documents ({n_rows} rows) are training documents "
            f"(e.g. {both[:5]}); held-out numbers need a held-out table. Split by document, or pass "
            "force_overlap=True / --force-overlap to evaluate anyway (eval.json records it)"
        )
    if both:
        log.warning(
            "evaluating despite %d overlapping documents (%d rows): forced, recorded in eval.json",
            len(both),
            n_rows,
        )
    return Overlap(True, sources, len(train), len(both), n_rows, both[:10], force)
