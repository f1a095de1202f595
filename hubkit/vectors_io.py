"""Reading and writing vector files for the CLI: safetensors, .npy or parquet (a `vector` column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hubkit.errors import DataError


def read_vectors(path: str | Path, key: str | None = None, column: str = "vector") -> Tensor:
    """A float32 ``[N, d]`` tensor from `path`; which tensor/column is used is explicit or unique."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such vectors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if key is None:
            if len(tensors) != 1 and "vectors" not in tensors:
                raise DataError(f"{path}: holds {sorted(tensors)}; name one with --key")
            key = "vectors" if "vectors" in tensors else next(iter(tensors))
        if key not in tensors:
            raise DataError(f"{path}: no tensor {key!r} (has {sorted(tensors)})")
        return tensors[key].float()
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(str(path), allow_pickle=False)).float()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(str(path), columns=[column]) if column else pq.read_table(str(path))
        if column not in table.column_names:
            raise DataError(f"{path}: no column {column!r} (has {table.column_names})")
        return torch.tensor(np.asarray(table.column(column).to_pylist(), dtype=np.float32))
    raise DataError(f"{path}: unknown vectors format {path.suffix!r}; use .safetensors, .npy or .parquet")


def write_vectors(path: str | Path, vectors: Tensor) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"vectors": vectors.float().contiguous().cpu()}, str(path))
    return path
