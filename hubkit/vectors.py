"""What a usable batch of activation vectors is, defined once: ``[N, d_model]`` float32, every row
finite and non-zero (a zero vector has no direction to inject or reconstruct). `check_vectors`
enforces it on a tensor; `vectors_from_column` reads a parquet ``vector`` column (fixed-size or
variable lists) into such a tensor; `read_vector_column` does both for a file. Every problem is one
`DataError` naming the file, the column and the first offending rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import torch
from torch import Tensor

from hubkit.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

VectorBatch = Annotated[Tensor, "n d_model"]
"""A float32 ``[N, d_model]`` tensor of activation vectors (shape annotation, as in the signatures below)."""

_SHOWN = 10  # rows named in an error


def unmeasurable_rows(vectors: Tensor) -> list[int]:
    """Rows of `vectors` ``[N, …, d]`` whose float32 norm overflows to inf or underflows to 0 though a value is
    not 0: finite numbers with no direction, cosine or MSE float32 can compute."""
    norms = vectors.float().norm(dim=-1)
    bad = (~torch.isfinite(norms)) | ((norms == 0) & (vectors != 0).any(dim=-1))
    while bad.ndim > 1:
        bad = bad.any(dim=-1)
    return bad.nonzero().flatten().tolist()


def extreme_message(vectors: Tensor, rows: list[int]) -> str:
    biggest = float(vectors[rows].abs().max())
    return (
        f"rows {rows[:_SHOWN]} have a norm float32 cannot hold (largest |value| {biggest:.3g}): no direction, "
        "cosine or MSE can be computed; rescale them (any scale: the NLA reads directions)"
    )


def check_vectors(
    vectors: Annotated[Tensor, "n d_model"],
    where: str,
    d_model: int | None = None,
    what: str = "column `vector`",
) -> Annotated[Tensor, "n d_model"]:
    """`vectors` as float32 after checking: 2-D, `d_model` wide (when given), finite, no all-zero row."""
    if vectors.ndim != 2:
        raise DataError(f"{where}: {what} must be 2-D [N, d_model], got shape {tuple(vectors.shape)}")
    if d_model is not None and vectors.shape[1] != d_model:
        raise DataError(
            f"{where}: {what} is {vectors.shape[1]} wide but the model's d_model is {d_model}; "
            "these vectors were extracted from another model or layer"
        )
    if vectors.shape[0] == 0:
        raise DataError(f"{where}: {what} has no rows")
    vectors = vectors.float()
    bad = (~torch.isfinite(vectors)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise DataError(f"{where}: {what} holds NaN or inf in rows {bad[:_SHOWN]}")
    extreme = unmeasurable_rows(vectors)
    if extreme:
        raise DataError(f"{where}: {what}: {extreme_message(vectors, extreme)}")
    zero = (vectors.norm(dim=1) == 0).nonzero().flatten().tolist()
    if zero:
        raise DataError(
            f"{where}: {what} is all-zero in rows {zero[:_SHOWN]} (a zero vector has no direction)"
        )
    return vectors


def vectors_from_column(
    column: pa.ChunkedArray | pa.Array, where: str, d_model: int | None = None, name: str = "vector"
) -> Annotated[Tensor, "n d_model"]:
    """A parquet/arrow list-of-float column as a checked ``[N, d_model]`` float32 tensor.

    With `d_model` every row must be that wide; without it every row must have one common width.
    """
    import pyarrow as pa

    what = f"column `{name}`"
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    tp = arr.type
    if not (pa.types.is_fixed_size_list(tp) or pa.types.is_list(tp) or pa.types.is_large_list(tp)):
        wanted = f"fixed_size_list<float32>[{d_model}]" if d_model else "a list of floats"
        raise DataError(
            f"{where}: {what} has type {tp}; expected {wanted} (vectors must be a list of floats)"
        )
    if not (pa.types.is_floating(tp.value_type) or pa.types.is_integer(tp.value_type)):
        raise DataError(f"{where}: {what} holds {tp.value_type}, expected floats")
    if len(arr) == 0:
        raise DataError(f"{where}: {what} has no rows")
    if arr.null_count:
        raise DataError(f"{where}: {what} has {arr.null_count} null rows")
    if pa.types.is_fixed_size_list(tp):
        width = tp.list_size
        if d_model is not None and width != d_model:
            raise DataError(
                f"{where}: {what} is {width} wide but the model's d_model is {d_model}; "
                "these vectors were extracted from another model or layer"
            )
    else:
        widths = np.asarray(arr.value_lengths())
        if d_model is not None and (widths != d_model).any():
            bad = np.nonzero(widths != d_model)[0][:_SHOWN].tolist()
            raise DataError(
                f"{where}: {what} rows {bad} are not {d_model} wide (widths {widths[bad].tolist()})"
            )
        if len(set(widths.tolist())) != 1:
            raise DataError(
                f"{where}: {what} has rows of different widths {sorted(set(widths.tolist()))[:5]}"
            )
        width = int(widths[0])
    flat = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)  # null items → NaN
    return check_vectors(torch.from_numpy(flat.reshape(len(arr), width).copy()), where, d_model, what)


def read_vector_column(
    path: str | Path, column: str = "vector", d_model: int | None = None
) -> Annotated[Tensor, "n d_model"]:
    """The checked vectors of one column of a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such parquet file")
    try:
        names = pq.read_schema(str(path)).names
        if column not in names:
            raise DataError(f"{path}: no column {column!r} (has {names})")
        table = pq.read_table(str(path), columns=[column])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0][:200]})") from exc
    return vectors_from_column(table.column(column), str(path), d_model, column)
