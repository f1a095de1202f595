"""Column layouts of the stage tables, and reading a table with its sidecar checked against it.

Activations (stage 0, and every split of it): ``doc_id`` string, ``position`` int32 (index in the
tokenized document, BOS = 0), ``token`` string, ``prefix`` string (decoded text up to and including
that token), ``vector`` fixed_size_list<float32>[d_model] (output of block L).
Labeled tables add `LABEL_COLUMNS`. Built tables are listed in `BUILT_COLUMNS`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hubkit.data.sidecar import DatasetSidecar, read_sidecar
from hubkit.errors import DataError, first_line

DOC_ID, POSITION, TOKEN, PREFIX, VECTOR = "doc_id", "position", "token", "prefix", "vector"
EXPLANATION = "explanation"
LABEL_COLUMNS = ("explanation", "labeler", "auditor", "prompt_sha256", "labeled_at", "label_status")
ACTIVATION_COLUMNS = (DOC_ID, POSITION, TOKEN, PREFIX, VECTOR)

SPLITS = ("av_sft", "ar_sft", "rl", "eval")
BUILT_COLUMNS: dict[str, tuple[str, ...]] = {
    "av_sft": (DOC_ID, POSITION, VECTOR, EXPLANATION),
    "ar_sft": (DOC_ID, POSITION, EXPLANATION, VECTOR),
    "rl": (DOC_ID, POSITION, PREFIX, VECTOR),
    "eval": (DOC_ID, POSITION, PREFIX, VECTOR),  # + explanation when the eval split was labeled
}


def vector_type(d_model: int) -> pa.DataType:
    return pa.list_(pa.float32(), d_model)


def activation_schema(d_model: int) -> pa.Schema:
    types = (pa.string(), pa.int32(), pa.string(), pa.string(), vector_type(d_model))  # ACTIVATION_COLUMNS's
    return pa.schema([pa.field(name, tp, nullable=False) for name, tp in zip(ACTIVATION_COLUMNS, types)])


LABEL_SCHEMA = pa.schema([pa.field(name, pa.string(), nullable=False) for name in LABEL_COLUMNS])


def vector_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """``[N, d]`` float array → a fixed-size-list<float32>[d] arrow array (zero-copy for float32)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise DataError(f"vectors must be 2-D [N, d_model], got shape {vectors.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def vectors_numpy(column: pa.ChunkedArray | pa.Array, d_model: int) -> np.ndarray:
    """A fixed-size-list vector column → ``[N, d_model]`` float32 numpy array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], vector_type(d_model))
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, d_model)


def check_vector_field(schema: pa.Schema, d_model: int, where: str) -> None:
    """The `vector` column must be fixed_size_list<float32>[d_model] (the width the sidecar records)."""
    if VECTOR not in schema.names:
        raise DataError(f"{where}: no `{VECTOR}` column (has {schema.names})")
    tp = schema.field(VECTOR).type
    if not pa.types.is_fixed_size_list(tp):
        raise DataError(
            f"{where}: column `{VECTOR}` is {tp}, expected fixed_size_list<float32>[{d_model}]; "
            "write vectors with hubkit.data.tables.vector_array"
        )
    if tp.list_size != d_model:
        raise DataError(
            f"{where}: column `{VECTOR}` holds vectors of width {tp.list_size}, but the sidecar says "
            f"d_model = {d_model}; the table and its sidecar do not belong together"
        )
    if not pa.types.is_float32(tp.value_type):
        raise DataError(f"{where}: column `{VECTOR}` holds {tp.value_type}, expected float32")


def check_columns(schema: pa.Schema, required: tuple[str, ...], where: str) -> None:
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing} (has {schema.names})")


def open_table(
    path: str | Path, required: tuple[str, ...] = ACTIVATION_COLUMNS
) -> tuple[pq.ParquetFile, DatasetSidecar]:
    """A parquet file and its sidecar, with the columns and the vector width checked against it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such table")
    sidecar = read_sidecar(path)
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"{path}: not a readable parquet file ({first_line(exc)}); the file is truncated or "
            "corrupt: run the stage that wrote it again"
        ) from exc
    schema = pf.schema_arrow
    check_columns(schema, required, str(path))
    if VECTOR in required or VECTOR in schema.names:
        check_vector_field(schema, sidecar.extraction.d_model, str(path))
    if sidecar.rows >= 0 and pf.metadata.num_rows != sidecar.rows:
        raise DataError(
            f"{path}: holds {pf.metadata.num_rows} rows but its sidecar says {sidecar.rows}; "
            "the file was changed after it was written"
        )
    return pf, sidecar


def read_table(
    path: str | Path, required: tuple[str, ...] = ACTIVATION_COLUMNS
) -> tuple[pa.Table, DatasetSidecar]:
    """`open_table`, read whole."""
    pf, sidecar = open_table(path, required)
    return pf.read(), sidecar
