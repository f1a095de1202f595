"""The held-out eval table: reading it, checking it against the NLA, selecting rows.

A parquet file with ``doc_id``, ``position``, ``prefix``, ``vector`` (float32 list of width d_model) and
optionally ``explanation``; a JSON sidecar next to it (a ``hubkit.dataset/…`` schema or ``kind: nla_dataset``)
may record the extraction and every split's ``split.doc_ids``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hubkit.errors import DataError
from hubkit.identity import same_base
from hubkit.provenance import sha256_file
from hubkit.vectors import vectors_from_column

log = logging.getLogger(__name__)

REQUIRED = ("doc_id", "position", "prefix", "vector")
# Fewest rows the statistics need: bootstrap intervals, a noise floor over other rows and
# identification at top-5 (chance 5/N must leave room above it).
MIN_ROWS = 10
SIDECAR_NAMES = ("{name}.json", "{stem}.sidecar.json", "{stem}.meta.json", "{stem}.json")  # next to the table


@dataclass
class EvalTable:
    """Rows of an eval table in memory, with where they came from."""

    path: Path | None
    sha256: str | None
    doc_ids: list[str]
    positions: np.ndarray
    prefixes: list[str]
    vectors: torch.Tensor  # float32 [N, d]
    explanations: list[str] | None = None
    sidecar: dict | None = None
    sidecar_path: Path | None = None
    indices: np.ndarray = field(default=None)  # row numbers in the file

    def __post_init__(self) -> None:
        n = self.vectors.shape[0]
        if self.indices is None:
            self.indices = np.arange(n)
        lengths = {len(self.doc_ids), len(self.positions), len(self.prefixes), len(self.indices)}
        if self.explanations is not None:
            lengths.add(len(self.explanations))
        if lengths != {n}:
            raise DataError(f"eval table columns have different lengths: {sorted(lengths)} (vectors: {n})")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def width(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def read(cls, path: str | Path, sidecar: str | Path | None = None) -> EvalTable:
        """Read and validate an eval parquet (columns, nulls, one width, finite non-zero vectors)."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such eval table")
        try:
            table = pq.read_table(str(path))
        except Exception as exc:  # ArrowInvalid and friends: not a parquet file
            raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            raise DataError(
                f"{path}: eval table lacks column(s) {missing} (has {table.column_names}); an eval table needs "
                f"{list(REQUIRED)}, as written by the data pipeline's eval split"
            )
        for c in REQUIRED:
            if nulls := table.column(c).null_count:
                raise DataError(f"{path}: column `{c}` has {nulls} null value(s)")
        vectors = vectors_from_column(table.column("vector"), str(path))
        expl = None
        if "explanation" in table.column_names:
            col = table.column("explanation").to_pylist()
            expl = None if all(e is None for e in col) else ["" if e is None else str(e) for e in col]
        side_path = Path(sidecar) if sidecar is not None else find_sidecar(path)
        side = None if side_path is None else read_json_object(side_path, "sidecar", "no such sidecar file")
        return cls(
            path=path,
            sha256=sha256_file(path),
            doc_ids=[str(d) for d in table.column("doc_id").to_pylist()],
            positions=np.asarray(table.column("position").to_pylist(), dtype=np.int64),
            prefixes=[str(p) for p in table.column("prefix").to_pylist()],
            vectors=vectors,
            explanations=expl,
            sidecar=side,
            sidecar_path=side_path,
        )

    def select(self, indices) -> EvalTable:
        """A sub-table of the given row positions (provenance kept; `indices` maps back to the file)."""
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            doc_ids=[self.doc_ids[i] for i in idx],
            positions=self.positions[idx],
            prefixes=[self.prefixes[i] for i in idx],
            vectors=self.vectors[torch.as_tensor(idx)],
            explanations=None if self.explanations is None else [self.explanations[i] for i in idx],
            indices=self.indices[idx],
        )


def find_sidecar(path: Path) -> Path | None:
    """The dataset sidecar next to `path`, if one of the usual names holds a dataset sidecar."""
    for name in SIDECAR_NAMES:
        if (cand := path.with_name(name.format(name=path.name, stem=path.stem))).is_file():
            try:
                data = json.loads(cand.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and (
                data.get("kind") == "nla_dataset" or str(data.get("schema", "")).startswith("hubkit.dataset/")
            ):
                return cand
    return None


def read_json_object(path: Path, what: str, missing: str) -> dict:
    """The JSON object in `path` (`what` it is); a missing file, bad JSON or another type names the file."""
    if not path.is_file():
        raise DataError(f"{path}: {missing}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def check_against_meta(table: EvalTable, meta) -> None:
    """Refuse a table whose width, layer or base model is not the NLA's (from the vectors and the sidecar)."""
    where = table.path or "<eval table>"
    if table.width != meta.d_model:
        raise DataError(
            f"{where}: vectors have width {table.width} but the NLA reads d_model={meta.d_model}; "
            f"extract the eval table from {meta.base_model} at layer {meta.layer}"
        )
    side = table.sidecar
    if side is None:
        return
    # the extraction as the sidecar records it: under `extraction` (hubkit) or at its top level (reference)
    ext = side.get("extraction") if isinstance(side.get("extraction"), dict) else {}
    d_model = ext.get("d_model", side.get("d_model"))
    layer = ext.get("layer_index", ext.get("layer", side.get("layer")))
    base = ext.get("base_model", side.get("base_model"))
    problems = []
    if d_model is not None and int(d_model) != meta.d_model:
        problems.append(f"d_model {d_model} vs the NLA's {meta.d_model}")
    if layer is not None and int(layer) != meta.layer:
        problems.append(f"layer {layer} vs the NLA's {meta.layer}")
    if base is not None and not same_base(str(base), meta.base_model):
        problems.append(f"base model {base!r} vs the NLA's {meta.base_model!r}")
    if problems:
        raise DataError(
            f"{table.sidecar_path}: the eval table was extracted differently from this NLA: "
            + "; ".join(problems)
            + ". Use an eval table extracted for this NLA"
        )


def select_rows(table: EvalTable, rows: int | None, seed: int) -> tuple[EvalTable, dict]:
    """All rows, or a seeded sample of `rows` of them (kept in file order); refuses fewer than the statistics need."""
    n = len(table)
    if rows is not None and not 1 <= rows <= n:
        raise DataError(f"{table.path}: asked for {rows} rows but the eval table has {n}")
    if (rows or n) < MIN_ROWS:
        raise DataError(
            f"{table.path}: {rows or n} rows evaluated but the statistics need at least {MIN_ROWS} (bootstrap "
            "intervals, a noise floor over other rows, top-5 identification); use a larger eval table"
        )
    if rows is None or rows == n:
        return table, {"method": "all", "n": n}
    idx = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    return table.select(idx), {"method": "seeded_sample", "n": rows, "seed": seed}
