"""Stage 3: the training and evaluation tables, each with its sidecar (columns: `tables.BUILT_COLUMNS`).

av_sft and ar_sft come from the labeled splits: av_sft's explanation is the AV target wrapped in
``<explanation>…</explanation>``, ar_sft's the plain text the AR reads. rl and eval come from the splits
(eval keeps its plain explanation when the eval split was labeled). Rows whose label failed are dropped
(counted in the log); any other empty explanation is an error, as are inputs from different extractions
(base model, layer, width) or splits sharing a document.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hubkit.data.label import STATUS_FAILED, wrap
from hubkit.data.outputs import check_path, check_table_output, make_dir, mark
from hubkit.data.sidecar import DatasetSidecar, write_sidecar
from hubkit.data.tables import BUILT_COLUMNS, DOC_ID, EXPLANATION, POSITION, SPLITS, VECTOR, open_table
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

LABELED = ("av_sft", "ar_sft")  # tables that need an explanation on every row


def _labeled_rows(table: pa.Table, where: str) -> pa.Table:
    """Drop failed labels; refuse any other missing or empty explanation."""
    if "label_status" in table.column_names:
        failed = pc.equal(table.column("label_status"), STATUS_FAILED)
        n_failed = pc.sum(failed).as_py() or 0
        if n_failed:
            log.warning("%s: dropping %d of %d rows whose label failed", where, n_failed, table.num_rows)
            table = table.filter(pc.invert(failed))
    texts = table.column(EXPLANATION)
    empty = pc.equal(pc.utf8_trim_whitespace(texts.fill_null("")), "")
    n_empty = pc.sum(empty).as_py() or 0
    if n_empty:
        bad = table.filter(empty).slice(0, 3).select([DOC_ID, POSITION]).to_pylist()
        where_rows = ", ".join(f"({r[DOC_ID]}, {r[POSITION]})" for r in bad)
        raise DataError(
            f"{where}: {n_empty} rows have an empty `{EXPLANATION}` (e.g. doc_id, position = "
            f"{where_rows}) and are not marked label_status=failed; relabel them with `hubkit label` "
            "or remove them"
        )
    return table


def _check_same_extraction(sidecars: dict[str, DatasetSidecar], paths: dict[str, Path]) -> None:
    first = next(iter(sidecars))
    for name, side in sidecars.items():
        for field in ("base_model", "layer", "d_model"):
            mine, ref = getattr(side.extraction, field), getattr(sidecars[first].extraction, field)
            if mine != ref:
                raise DataError(
                    f"{paths[name]} and {paths[first]} come from different extractions: "
                    f"{field} {mine!r} vs {ref!r}"
                )


def _check_disjoint(tables: dict[str, pa.Table], paths: dict[str, Path]) -> None:
    seen: dict[str, str] = {}
    for name, table in tables.items():
        for doc in pc.unique(table.column(DOC_ID)).to_pylist():
            if doc in seen:  # ids are unique within a table
                raise DataError(
                    f"document {doc!r} is in both {paths[seen[doc]]} and {paths[name]}; "
                    "split the activations by document with `hubkit split`"
                )
            seen[doc] = name


def build_tables(
    out_dir: str | Path, inputs: dict[str, str | Path], overwrite: bool = False
) -> dict[str, Path]:
    """Build ``<out_dir>/<name>.parquet`` (+ sidecar) for each of `inputs` (split name → split or labeled
    table), existing outputs as `check_table_output` allows."""
    unknown = sorted(set(inputs) - set(SPLITS))
    if unknown or not inputs:
        raise DataError(f"build: tables must be some of {list(SPLITS)}, got {sorted(inputs)}")
    check_path(out_dir)
    for name in inputs:
        check_table_output(Path(out_dir) / f"{name}.parquet", overwrite)
    paths = {name: Path(p) for name, p in inputs.items()}
    tables: dict[str, pa.Table] = {}
    sidecars: dict[str, DatasetSidecar] = {}
    for name, path in paths.items():
        pf, sidecars[name] = open_table(path, (DOC_ID, POSITION, VECTOR))
        if name in LABELED and EXPLANATION not in pf.schema_arrow.names:
            raise DataError(
                f"{path}: the {name} table has no `{EXPLANATION}` column; label it first "
                f"(`hubkit label --in {path} --out …`)"
            )
        tables[name] = pf.read()
    _check_same_extraction(sidecars, paths)
    _check_disjoint(tables, paths)
    out_dir = make_dir(out_dir)
    written: dict[str, Path] = {}
    for name, table in tables.items():
        labeled = EXPLANATION in table.column_names
        if labeled:
            table = _labeled_rows(table, str(paths[name]))
        if table.num_rows == 0:
            raise DataError(f"{paths[name]}: no usable rows for the {name} table")
        columns = list(BUILT_COLUMNS[name]) + ([EXPLANATION] if name == "eval" and labeled else [])
        table = table.select(columns)
        if name == "av_sft":  # labeled, as checked above
            wrapped = pa.array([wrap(t) for t in table.column(EXPLANATION).to_pylist()], pa.string())
            table = table.set_column(columns.index(EXPLANATION), EXPLANATION, wrapped)
        path, tmp = out_dir / f"{name}.parquet", out_dir / f"{name}.parquet.tmp"
        pq.write_table(table.replace_schema_metadata(mark(table.schema).metadata), tmp)
        os.replace(tmp, path)
        side = sidecars[name].derive(
            table=name,
            rows=table.num_rows,
            columns=columns,
            explanation_format=("tagged" if name == "av_sft" else "plain") if labeled else None,
            parents={paths[name].name: sha256_file(paths[name])},
        )
        write_sidecar(path, side)
        written[name] = path
        log.info("%s: %d rows", path, table.num_rows)
    return written


def build_from_dirs(
    splits_dir: str | Path, labeled_dir: str | Path, out_dir: str | Path, overwrite: bool = False
) -> dict[str, Path]:
    """All four tables: av_sft and ar_sft from `labeled_dir`, rl from `splits_dir`, eval from whichever has it
    (the labeled one preferred)."""
    splits_dir, labeled_dir = Path(splits_dir), Path(labeled_dir)
    inputs: dict[str, Path] = {}
    for name in LABELED:
        path = labeled_dir / f"{name}.parquet"
        if not path.exists():
            raise DataError(
                f"{path}: missing; label the {name} split first "
                f"(`hubkit label --in {splits_dir / (name + '.parquet')} --out {path}`)"
            )
        inputs[name] = path
    for name, folders in (("rl", [splits_dir]), ("eval", [labeled_dir, splits_dir])):
        found = [folder / f"{name}.parquet" for folder in folders if (folder / f"{name}.parquet").exists()]
        if not found:
            raise DataError(f"{splits_dir / (name + '.parquet')}: missing; run `hubkit split` first")
        inputs[name] = found[0]
    return build_tables(out_dir, inputs, overwrite)
