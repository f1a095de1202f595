"""Stage 1: split the activations table by document into av_sft / ar_sft / rl / eval.

Documents are ordered by sha256(seed, doc_id) and cut into consecutive runs whose sizes follow the
fractions (largest remainder, so the counts add up exactly). The split depends only on the set of
document ids, the fractions and the seed, never on row order; every document lands in exactly one
split, so no text is seen by two stages. Each split table's sidecar records the fractions, the
seed and the doc ids of every split.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hubkit.data.outputs import check_path, check_table_output, make_dir, mark
from hubkit.data.sidecar import SplitInfo, write_sidecar
from hubkit.data.tables import ACTIVATION_COLUMNS, DOC_ID, SPLITS, open_table
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS: dict[str, float] = {"av_sft": 0.4, "ar_sft": 0.4, "rl": 0.1, "eval": 0.1}


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Fractions for known split names, each in [0, 1], adding up to 1."""
    unknown = sorted(set(fractions) - set(SPLITS))
    if unknown:
        raise DataError(f"unknown split name(s) {unknown}; splits are {list(SPLITS)}")
    bad = {k: v for k, v in fractions.items() if not (isinstance(v, (int, float)) and 0 <= v <= 1)}
    if bad:
        raise DataError(f"split fractions must be numbers in [0, 1], got {bad}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise DataError(f"split fractions must add up to 1, got {total:g} ({dict(fractions)})")
    return {name: float(fractions.get(name, 0.0)) for name in SPLITS}


def parse_fractions(text: str) -> dict[str, float]:
    """``"av_sft=0.4,ar_sft=0.4,rl=0.1,eval=0.1"`` → a dict (checked)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise DataError(f"split fraction {part!r} is not NAME=FRACTION")
        try:
            out[name.strip()] = float(value)
        except ValueError as exc:
            raise DataError(f"split fraction {part!r}: {value!r} is not a number") from exc
    return check_fractions(out)


def split_doc_ids(
    doc_ids: Iterable[str], fractions: Mapping[str, float], seed: int = 0
) -> dict[str, list[str]]:
    """Assign each distinct doc id to one split; deterministic in (set of ids, fractions, seed)."""
    fractions = check_fractions(fractions)
    ordered = sorted(set(doc_ids), key=lambda d: (hashlib.sha256(f"{seed}\0{d}".encode()).digest(), d))
    n = len(ordered)
    exact = {name: fractions[name] * n for name in SPLITS}
    counts = {name: math.floor(v) for name, v in exact.items()}
    leftover = n - sum(counts.values())
    for name in sorted(SPLITS, key=lambda s: (-(exact[s] - counts[s]), SPLITS.index(s)))[:leftover]:
        counts[name] += 1
    ends = itertools.accumulate(counts[name] for name in SPLITS)
    return {name: ordered[end - counts[name] : end] for name, end in zip(SPLITS, ends)}


def split_table(
    activations: str | Path,
    out_dir: str | Path,
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``<out_dir>/<split>.parquet`` (+ sidecars) for every split, existing outputs as
    `check_table_output` allows; returns their paths."""
    activations, out_dir = Path(activations), Path(out_dir)
    check_path(out_dir)
    for name in SPLITS:
        check_table_output(out_dir / f"{name}.parquet", overwrite)
    fractions = check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    pf, parent = open_table(activations, ACTIVATION_COLUMNS)
    if pf.metadata.num_rows == 0:
        raise DataError(f"{activations}: the table has no rows to split")
    doc_ids = pc.unique(pf.read(columns=[DOC_ID]).column(DOC_ID)).to_pylist()
    assignment = split_doc_ids(doc_ids, fractions, seed)
    for name in SPLITS:
        if fractions[name] > 0 and not assignment[name]:
            log.warning(
                "split %s gets no document (%d documents, fraction %g)", name, len(doc_ids), fractions[name]
            )
    make_dir(out_dir)
    parent_sha = sha256_file(activations)
    paths: dict[str, Path] = {}
    for name in SPLITS:
        path = out_dir / f"{name}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        keep = pa.array(assignment[name], pa.string())
        rows = 0
        with pq.ParquetWriter(tmp, mark(pf.schema_arrow)) as writer:
            for batch in pf.iter_batches(batch_size=4096):
                part = pa.Table.from_batches([batch]).filter(pc.is_in(batch.column(DOC_ID), value_set=keep))
                rows += part.num_rows
                if part.num_rows:
                    writer.write_table(part)
        tmp.replace(path)
        split = SplitInfo(name=name, fractions=fractions, seed=seed, doc_ids=assignment)
        side = parent.derive(table="split", rows=rows, split=split, parents={activations.name: parent_sha})
        write_sidecar(path, side)
        paths[name] = path
    return paths
