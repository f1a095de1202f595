"""Reading and writing vector files for the CLI: safetensors, .npy or parquet (a `vector` column), each
checked by `hubkit.vectors.check_vectors`; a file that cannot be read is one `DataError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np

from hubkit.errors import DataError, first_line

if TYPE_CHECKING:
    from torch import Tensor

SUFFIXES = (".safetensors", ".npy", ".parquet")


def _read_safetensors(path: Path, key: str | None) -> Tensor:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = sorted(f.keys())
            if key is None:
                if len(keys) != 1 and "vectors" not in keys:
                    raise DataError(f"{path}: holds {keys}; name one with --key")
                key = "vectors" if "vectors" in keys else keys[0]
            if key not in keys:
                raise DataError(f"{path}: no tensor {key!r} (has {keys})")
            return f.get_tensor(key)
    except DataError:
        raise
    except Exception as exc:  # safetensors' own error, OSError, ValueError: a damaged file
        raise DataError(f"{path}: not a readable safetensors file ({first_line(exc)})") from exc


def _read_npy(path: Path) -> Tensor:
    import torch

    try:
        array = np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: an object array (stored as a pickle, which hubkit never loads); save a float array"
            ) from exc
        raise DataError(f"{path}: not a readable .npy file ({first_line(exc)})") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":  # floats or integers
        raise DataError(
            f"{path}: holds {getattr(array, 'dtype', type(array).__name__)}, expected a float array"
        )
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


def read_vectors(
    path: str | Path, key: str | None = None, column: str = "vector"
) -> Annotated[Tensor, "n d_model"]:
    """A checked float32 ``[N, d]`` tensor from `path`; which tensor/column is used is explicit or unique."""
    import torch

    from hubkit.vectors import check_vectors, read_vector_column  # lazy: `import hubkit.vectors_io` is light

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such vectors file")
    if path.suffix == ".parquet":
        return read_vector_column(path, column)
    if path.suffix == ".safetensors":
        vectors = _read_safetensors(path, key)
    elif path.suffix == ".npy":
        vectors = _read_npy(path)
    else:
        raise DataError(f"{path}: unknown vectors format {path.suffix!r}; use {', '.join(SUFFIXES)}")
    if vectors.is_complex() or vectors.dtype == torch.bool:
        raise DataError(f"{path}: holds {vectors.dtype} values, expected floats")
    return check_vectors(vectors, str(path), what="vectors")


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file's content; a binary or non-UTF-8 file is a one-line `DataError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    if b"\0" in raw[:65536]:
        raise DataError(f"{path}: a binary file (it holds NUL bytes), not UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (undecodable byte at offset {exc.start}); convert it to UTF-8"
        ) from exc


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a bad line is a `DataError`."""
    rows = []
    for n, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line")
        rows.append((n, row))
    return rows


def read_texts(path: str | Path) -> list[str]:
    """Explanations for `hubkit reconstruct`: one per line, or a .jsonl of ``{"text": …}`` objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such text file")
    text = read_text_file(path)
    if not text.strip():
        raise DataError(f"{path}: holds no texts; write one explanation per line")
    if path.suffix != ".jsonl":
        return text.splitlines()
    rows = read_jsonl(path)
    for n, row in rows:
        if not isinstance(row.get("text"), str):
            raise DataError(f"{path}:{n}: expected an object with a string `text` field")
    return [row["text"] for _, row in rows]


def write_vectors(path: str | Path, vectors: Annotated[Tensor, "n d_model"]) -> Path:
    """Write `vectors` as float32 under the key ``vectors`` of a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": vectors.float().contiguous().cpu()}, str(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return path
