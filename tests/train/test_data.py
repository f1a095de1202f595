from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hubkit.errors import DataError
from hubkit.train import data as training_data

from .train_helpers import D_MODEL, TEXTS, vector_column, write_rl, write_sft


def test_reads_vectors_texts_and_hash(sft_table):
    path, vectors, texts = sft_table
    t = training_data.read_sft(path, D_MODEL, "av")
    assert torch.equal(t.vectors, vectors.float())
    assert t.texts == texts and len(t) == len(texts)
    import hashlib

    assert t.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_vector_width_is_refused(tmp_path):
    path = write_sft(tmp_path / "w.parquet", torch.randn(3, D_MODEL + 1), TEXTS[:3])
    with pytest.raises(
        DataError,
        match=rf"w.parquet: column `vector` is {D_MODEL + 1} wide but the model's d_model is {D_MODEL}",
    ):
        training_data.read_sft(path, D_MODEL, "av")
    ragged = pa.table(
        {
            "doc_id": ["a", "b"],
            "position": [0, 1],
            "vector": [[1.0] * D_MODEL, [1.0] * 5],
            "explanation": ["x", "y"],
        }
    )
    pq.write_table(ragged, tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"rows \[1\] are not 32 wide"):
        training_data.read_sft(tmp_path / "r.parquet", D_MODEL, "ar")


def test_empty_labels_are_refused(tmp_path):
    texts = ["fine", "", "   ", "ok"]
    path = write_sft(tmp_path / "e.parquet", torch.randn(4, D_MODEL), texts)
    with pytest.raises(DataError, match=r"e.parquet: column `explanation` is empty or null in rows \[1, 2\]"):
        training_data.read_sft(path, D_MODEL, "av")
    path = write_sft(
        tmp_path / "t.parquet", torch.randn(2, D_MODEL), ["fine", "<explanation> </explanation>"]
    )
    with pytest.raises(DataError, match=r"empty tags .* rows \[1\]"):
        training_data.read_sft(path, D_MODEL, "ar")


def test_other_bad_tables(tmp_path):
    with pytest.raises(DataError, match="no such parquet file"):
        training_data.read_sft(tmp_path / "none.parquet", D_MODEL, "av")
    pq.write_table(
        pa.table({"doc_id": ["a"], "vector": vector_column(torch.randn(1, D_MODEL))}), tmp_path / "m.parquet"
    )
    with pytest.raises(DataError, match=r"missing column\(s\) \['position', 'explanation'\]"):
        training_data.read_sft(tmp_path / "m.parquet", D_MODEL, "av")
    v = torch.randn(2, D_MODEL)
    v[1] = float("nan")
    with pytest.raises(DataError, match=r"NaN or inf in rows \[1\]"):
        training_data.read_rl(write_rl(tmp_path / "n.parquet", v), D_MODEL)
    v[1] = 0.0
    with pytest.raises(DataError, match=r"all-zero in rows \[1\]"):
        training_data.read_rl(write_rl(tmp_path / "z.parquet", v), D_MODEL)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        training_data.read_rl(tmp_path / "junk.parquet", D_MODEL)


def test_tags():
    assert training_data.tagged("bare text ") == "<explanation>bare text</explanation>"
    assert (
        training_data.tagged("x <explanation> inner </explanation> y") == "<explanation>inner</explanation>"
    )
    assert training_data.inner_text("<explanation>unclosed") == "unclosed"


def test_data_order_is_a_pure_function_of_seed_and_step():
    n, per_step = 5, 3
    stream = [i for s in range(4) for i in training_data.step_rows(n, seed=7, step=s, per_step=per_step)]
    # every epoch of the stream is a permutation of the rows
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    assert (
        training_data.step_rows(n, 7, 2, per_step) == stream[6:9]
    )  # step 2 alone = the same rows (resume needs no replay)
    assert training_data.step_rows(n, 8, 0, per_step) != training_data.step_rows(n, 7, 0, per_step) or n < 3
    rows = list(range(8))
    # 2 processes × 2 micro-batches of 2 cover a step's rows exactly once
    parts = [training_data.micro_batches(rows, 2, r, 2) for r in range(2)]
    assert sorted(i for p in parts for mb in p for i in mb) == rows
    assert training_data.micro_batches(rows, 2, 0, 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
