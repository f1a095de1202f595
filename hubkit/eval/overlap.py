"""Held-out or not: the eval table's documents against every training document hubkit can find: the tables
given (``--train-table``), the eval sidecar's non-``eval`` splits (or a flat ``train_doc_ids``), and what the
checkpoints name (`trained_on`). Overlap is refused unless forced; eval.json records what was compared
(``doc_level``: documents, not only file hashes)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hubkit.errors import DataError
from hubkit.eval.table import EvalTable
from hubkit.eval.trained_on import TrainedOn, merge
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

# Flat sidecar keys that may list the documents the NLA was trained on (besides `split.doc_ids`).
TRAIN_ID_KEYS = ("train_doc_ids", "training_doc_ids")
# The data pipeline's held-out split (hubkit.data.tables.SPLITS); every other split is training data.
HELD_OUT_SPLIT = "eval"


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
    doc_level: bool = False  # documents compared (not only the table's sha256 against recorded ones)


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
    """Training doc ids a sidecar lists: every split's ``split.doc_ids`` but the held-out one, or a flat list
    (a table whose own split is a training split lists its own documents: training data, whatever its name)."""
    out: dict[str, set[str]] = {}
    split = sidecar.get("split")
    if isinstance(split, dict) and isinstance(split.get("doc_ids"), dict):
        for name, ids in split["doc_ids"].items():
            if name != HELD_OUT_SPLIT and isinstance(ids, list):
                out[f"split.doc_ids.{name}"] = {str(d) for d in ids}
    for key in TRAIN_ID_KEYS:
        if isinstance(sidecar.get(key), list):
            out[key] = {str(d) for d in sidecar[key]}
    return out


def check_overlap(
    table: EvalTable, train_tables=(), force: bool = False, trained: Sequence[TrainedOn] = ()
) -> Overlap:
    """Compare eval `doc_id`s with every training document known (`trained`: what the checkpoints name);
    refuse overlap unless forced."""
    found: list[tuple[dict, set[str] | None]] = []  # (what was compared, its documents; None: sha256 only)
    for rec in merge(trained):
        src = {"checkpoint": rec.checkpoint, "stage": rec.stage, "data_sha256": rec.data_sha256}
        if rec.data_sha256 is not None and rec.data_sha256 == table.sha256:
            # the eval table is this checkpoint's training table
            found.append(({**src, "matched": "eval table sha256"}, set(table.doc_ids)))
        elif rec.data_path is not None:
            found.append(({**src, "path": rec.data_path}, train_doc_ids(rec.data_path)))
        elif rec.data_sha256 is not None:
            found.append(({**src, "matched": None}, None))
    for p in map(Path, train_tables):
        found.append(({"path": str(p), "sha256": sha256_file(p) if p.is_file() else None}, train_doc_ids(p)))
    for key, listed in sidecar_train_ids(table.sidecar or {}).items():
        found.append(({"sidecar": str(table.sidecar_path), "key": key}, listed))
    sources = [{**src, "n_docs": None if ids is None else len(ids)} for src, ids in found]
    train: set[str] = set().union(*(ids for _, ids in found if ids is not None))
    doc_level = any(ids is not None for _, ids in found)
    if not sources:
        log.warning(
            "no training tables given or named by the checkpoints: the eval table's overlap with training "
            "documents is NOT checked"
        )
        return Overlap(False, [], 0, 0, 0, [], force)
    if not doc_level:
        log.warning(
            "the checkpoints name their training tables only by sha256 (not found beside their runs): the eval "
            "table is not one of them, but its documents were not compared; pass --train-table"
        )
    eval_docs = set(table.doc_ids)
    both = sorted(eval_docs & train)
    n_rows = sum(1 for d in table.doc_ids if d in train)
    if both and not force:
        raise DataError(
            f"{table.path}: {len(both)} of its {len(eval_docs)} documents ({n_rows} rows) are training documents "
            f"(e.g. {both[:5]}; compared with {_names(sources)}); held-out numbers need a held-out table. "
            "Evaluate on the held-out split (split by document), or pass "
            "force_overlap=True / --force-overlap to evaluate anyway (eval.json records it)"
        )
    if both:
        log.warning(
            "evaluating despite %d overlapping documents (%d rows): forced, recorded in eval.json",
            len(both),
            n_rows,
        )
    return Overlap(True, sources, len(train), len(both), n_rows, both[:10], force, doc_level)


def _names(sources: list[dict]) -> str:
    """Short names of what was compared, for the error message."""
    out = []
    for s in sources:
        if "checkpoint" in s:
            what = "its training table" if s.get("matched") else "training table"
            out.append(f"checkpoint {s['checkpoint']} ({s.get('stage')}) {what}")
        elif "sidecar" in s:
            out.append(f"sidecar {s['key']}")
        else:
            out.append(str(s["path"]))
    return ", ".join(out[:4]) + (" …" if len(out) > 4 else "")
