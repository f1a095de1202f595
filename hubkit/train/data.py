"""Training tables (``av_sft``, ``ar_sft``, ``rl`` parquet) read and checked, and the order rows are used in.

Data order is a pure function of (seed, sample counter), an endless stream of seeded permutations, so a
resumed run, or one split over several processes, draws the rows an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from hubkit import constants as C
from hubkit.data.tables import BUILT_COLUMNS
from hubkit.errors import DataError, first_line
from hubkit.provenance import sha256_file
from hubkit.vectors import vectors_from_column
from hubkit.verbalizer import parse_explanation

# the built table (`hubkit.data.tables.BUILT_COLUMNS`) each stage reads
STAGE_TABLE = {"av": "av_sft", "ar": "ar_sft", "grpo": "rl"}


@dataclass
class Table:
    """The rows a stage trains on: vectors ``[N, d]`` float32 and, for SFT, explanation texts."""

    path: Path
    sha256: str
    vectors: Tensor
    texts: list[str] | None

    def __len__(self) -> int:
        return self.vectors.shape[0]


def _parquet(path: Path, read: Callable[[str], Any], where: str = "") -> Any:
    """`read(path)` of a parquet file, or one `DataError` (prefixed by `where`) when it is missing or unreadable."""
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{prefix}{path}: no such parquet file")
    try:
        return read(str(path))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{prefix}{path}: not a readable parquet file ({first_line(exc)})"
        ) from exc


def _read(path: Path, columns: tuple[str, ...], d_model: int) -> tuple[pa.Table, Table]:
    """(arrow table, `Table` without texts): the file checked column by column, vectors as float32."""
    table = _parquet(path, pq.read_table)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected {list(columns)}, found {table.column_names}"
        )
    if table.num_rows == 0:
        raise DataError(f"{path}: the table has no rows")
    vectors = vectors_from_column(table.column("vector"), str(path), d_model)
    return table, Table(path, sha256_file(path), vectors, None)


def inner_text(text: str, open_tag: str = C.EXPLANATION_OPEN, close_tag: str = C.EXPLANATION_CLOSE) -> str:
    """The explanation without its tags (bare text is returned stripped)."""
    return parse_explanation(text, open_tag, close_tag)[0]


def tagged(text: str, open_tag: str = C.EXPLANATION_OPEN, close_tag: str = C.EXPLANATION_CLOSE) -> str:
    """``<explanation>text</explanation>``: what the AV learns to write (bare text gets wrapped)."""
    return f"{open_tag}{inner_text(text, open_tag, close_tag)}{close_tag}"


def read_sft(path: str | Path, d_model: int, stage: str) -> Table:
    """An ``av_sft``/``ar_sft`` table: vectors and explanations, each row checked."""
    path = Path(path)
    table, rows = _read(path, BUILT_COLUMNS[STAGE_TABLE[stage]], d_model)
    texts = table.column("explanation").to_pylist()
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"{path}: column `explanation` is empty or null in rows {bad[:10]}{' …' if len(bad) > 10 else ''} "
            f"({len(bad)} of {len(texts)}); drop or relabel those rows"
        )
    empty = [i for i, t in enumerate(texts) if not inner_text(t)]
    if empty:
        raise DataError(
            f"{path}: column `explanation` has empty tags (`<explanation></explanation>`) in rows {empty[:10]}"
        )
    return replace(rows, texts=texts)


def read_rl(path: str | Path, d_model: int) -> Table:
    """An ``rl`` table: the vectors GRPO explains (``prefix`` is kept in the file for people, not used)."""
    return _read(Path(path), BUILT_COLUMNS["rl"], d_model)[1]


def check_columns(path: str | Path, stage: str, where: str) -> None:
    """Read only the schema of a stage's table: it must be parquet with that stage's columns (and a GRPO
    table no `explanation`: an SFT table given as RL data is a mix-up, not a superset)."""
    path = Path(path)
    names = _parquet(path, lambda p: pq.read_schema(p).names, where)
    missing = [c for c in BUILT_COLUMNS[STAGE_TABLE[stage]] if c not in names]
    if missing or (stage == "grpo" and "explanation" in names):
        what = f"lacks column(s) {missing}" if missing else "has an `explanation` column (an SFT table)"
        table = (
            "the rl split (vectors, no explanations)"
            if stage == "grpo"
            else f"the {STAGE_TABLE[stage]} table"
        )
        raise DataError(f"{where}: {path} {what}; `{stage}` trains on {table}, columns {names}")


def permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of `epoch`: a permutation seeded by (seed, epoch) only."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g).tolist()


def step_rows(n: int, seed: int, step: int, per_step: int) -> list[int]:
    """Row indices of global step `step` (0-based): samples ``[step·B, (step+1)·B)`` of the epoch stream."""
    start = step * per_step
    first, last = start // n, (start + per_step - 1) // n  # the epochs those samples fall in
    stream = [i for epoch in range(first, last + 1) for i in permutation(n, seed, epoch)]
    return stream[start - first * n : start - first * n + per_step]


def micro_batches(rows: list[int], micro: int, rank: int, world: int) -> list[list[int]]:
    """This process's micro-batches of a global step's rows: contiguous chunks, dealt round-robin."""
    chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
    return chunks[rank::world]
