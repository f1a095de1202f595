"""What a usable batch of activation vectors is, defined once: ``[N, d_model]`` float32, every row
finite and non-zero (a zero vector has no direction to inject or reconstruct).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import torch
from torch import Tensor

from hubkit.errors import DataError, InjectionError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

_SHOWN = 10  # rows named in an error


def check_vectors(
    vectors: Annotated[Tensor, "n d_model"] | Any,
    where: str = "",
    d_model: int | None = None,
    what: str | None = None,
    *,
    nla_input: bool = False,
    slots: bool = False,
) -> Annotated[Tensor, "n d_model"]:
    """`vectors` as float32 after checking: 2-D (or ``[N, k, d]`` with `slots`), `d_model` wide when
    given, finite, with a norm float32 can hold, no all-zero vector. Each problem is one `DataError` (with
    `nla_input`: an `InjectionError`, any array accepted, ``[d]`` read as ``[1, d]``)."""
    error = InjectionError if nla_input else DataError
    what = what or ("the vector batch" if nla_input else "column `vector`")
    head = f"{where}: {what}" if where else what
    if nla_input:
        vectors = torch.as_tensor(vectors)
        vectors = vectors[None] if vectors.ndim == 1 else vectors
    if vectors.ndim != 2 and not (slots and vectors.ndim == 3):
        shapes = "2-D [N, d_model]" + (" or 3-D [N, k, d_model]" if slots else "")
        raise error(f"{head} must be {shapes}, got shape {tuple(vectors.shape)}")
    width = vectors.shape[-1]
    if d_model is not None and width != d_model:
        raise error(
            f"{head} is {width} wide but the model's d_model is {d_model}: vectors of width {width} were "
            "extracted from another model or layer; extract them at the NLA's layer from its base model"
        )
    if 0 in vectors.shape[:-1]:
        raise error(f"{head} has no rows: shape {tuple(vectors.shape)}")
    vectors = vectors.detach().float()
    flat = vectors.reshape(vectors.shape[0], -1, width)  # [N, k, d]: a row is bad when one of its vectors is
    bad = (~torch.isfinite(flat)).any(dim=-1).any(dim=-1).nonzero().flatten().tolist()
    if bad:
        raise error(f"{head} holds NaN or inf in rows {bad[:_SHOWN]}")
    # finite values whose norm overflows to inf or underflows to 0 have no direction
    norms = flat.norm(dim=-1)
    extreme = ((~torch.isfinite(norms)) | ((norms == 0) & (flat != 0).any(dim=-1))).any(dim=-1)
    rows = extreme.nonzero().flatten().tolist()
    if rows:
        raise error(
            f"{head}: rows {rows[:_SHOWN]} have a norm float32 cannot hold (largest |value| "
            f"{float(flat[rows].abs().max()):.3g}): no direction, cosine or MSE can be computed; rescale them "
            "(any scale: the NLA reads directions)"
        )
    zero = (norms == 0).any(dim=-1).nonzero().flatten().tolist()
    if zero:
        raise error(f"{head} is all-zero in rows {zero[:_SHOWN]} (a zero vector has no direction)")
    return vectors


def vectors_from_column(
    column: pa.ChunkedArray | pa.Array, where: str, d_model: int | None = None, name: str = "vector"
) -> Annotated[Tensor, "n d_model"]:
    """A parquet/arrow list-of-float column as a checked ``[N, d_model]`` float32 tensor."""
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
        width = tp.list_size  # `check_vectors` compares it with d_model
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
        raise DataError(f"{path}: not a readable parquet file ({first_line(exc)})") from exc
    return vectors_from_column(table.column(column), str(path), d_model, column)
