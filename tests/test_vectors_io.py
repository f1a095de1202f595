"""Vector and text files for the CLI: every damaged or unusable file is one DataError naming it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hubkit.errors import DataError
from hubkit.vectors import check_vectors, read_vector_column, vectors_from_column
from hubkit.vectors_io import read_texts, read_vectors, write_vectors


def test_round_trip_of_each_format(tmp_path):
    v = torch.randn(5, 8)
    assert torch.equal(read_vectors(write_vectors(tmp_path / "v.safetensors", v)), v)
    np.save(tmp_path / "v.npy", v.numpy().astype(np.float64))
    torch.testing.assert_close(read_vectors(tmp_path / "v.npy"), v)
    pq.write_table(pa.table({"vector": v.tolist()}), tmp_path / "v.parquet")
    torch.testing.assert_close(read_vectors(tmp_path / "v.parquet"), v)


def test_damaged_files_are_one_line_errors(tmp_path):
    path = write_vectors(tmp_path / "v.safetensors", torch.randn(4, 8))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match=rf"{path}: not a readable safetensors file"):
        read_vectors(path)
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(DataError, match="not a readable safetensors file"):
        read_vectors(path)
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=rf"{obj}: an object array .* hubkit never loads"):
        read_vectors(obj)
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npy file"):
        read_vectors(tmp_path / "t.npy")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_vectors(tmp_path / "b.parquet")
    with pytest.raises(DataError, match="unknown vectors format '.pt'"):
        (tmp_path / "x.pt").write_bytes(b"x")
        read_vectors(tmp_path / "x.pt")


def test_nan_zero_and_shape_are_refused_the_same_way_everywhere(tmp_path):
    v = torch.randn(4, 8)
    v[2, 3] = float("nan")
    with pytest.raises(DataError, match=r"NaN or inf in rows \[2\]"):
        read_vectors(write_vectors(tmp_path / "n.safetensors", v))
    v = torch.randn(4, 8)
    v[1] = 0
    np.save(tmp_path / "z.npy", v.numpy())
    with pytest.raises(DataError, match=r"all-zero in rows \[1\]"):
        read_vectors(tmp_path / "z.npy")
    np.save(tmp_path / "d1.npy", np.ones(8, np.float32))
    with pytest.raises(DataError, match=r"must be 2-D \[N, d_model\], got shape \(8,\)"):
        read_vectors(tmp_path / "d1.npy")
    with pytest.raises(DataError, match="is 8 wide but the model's d_model is 6"):
        check_vectors(torch.ones(2, 8), "x", d_model=6)


def test_parquet_vector_column_widths_nulls_and_types(tmp_path):
    ragged = pa.array([[1.0, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(DataError, match=r"different widths \[2, 3\]"):
        vectors_from_column(ragged, "t")
    with pytest.raises(DataError, match=r"rows \[1\] are not 2 wide"):
        vectors_from_column(ragged, "t", d_model=2)
    with pytest.raises(DataError, match="1 null rows"):
        vectors_from_column(pa.array([[1.0, 2.0], None]), "t")
    with pytest.raises(DataError, match=r"NaN or inf in rows \[0\]"):  # a null inside a row
        vectors_from_column(pa.array([[1.0, None], [1.0, 2.0]]), "t")
    with pytest.raises(DataError, match="has type string"):
        vectors_from_column(pa.array(["a", "b"]), "t")
    pq.write_table(pa.table({"v": [[3.0, 4.0]]}), tmp_path / "c.parquet")
    with pytest.raises(DataError, match=r"no column 'vector' \(has \['v'\]\)"):
        read_vector_column(tmp_path / "c.parquet")
    torch.testing.assert_close(read_vector_column(tmp_path / "c.parquet", "v"), torch.tensor([[3.0, 4.0]]))


def test_text_files(tmp_path):
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    assert read_texts(tmp_path / "t.txt") == ["one", "two"]
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_texts(tmp_path / "t.jsonl") == ["a", "b"]
    (tmp_path / "b.txt").write_bytes(b"\x00\x01binary")
    with pytest.raises(DataError, match="a binary file"):
        read_texts(tmp_path / "b.txt")
    (tmp_path / "l.txt").write_bytes(b"caf\xe9")
    with pytest.raises(DataError, match=r"not UTF-8 text \(undecodable byte at offset 3\)"):
        read_texts(tmp_path / "l.txt")
    (tmp_path / "n.jsonl").write_text('{"txt": "a"}\n')
    with pytest.raises(DataError, match=r"n.jsonl:1: expected an object with a string `text` field"):
        read_texts(tmp_path / "n.jsonl")
