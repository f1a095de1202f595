import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubkit.errors import DataError
from hubkit.eval.overlap import check_overlap
from hubkit.eval.table import EvalTable, check_against_meta, find_sidecar
from hubkit.provenance import sha256_file

from .conftest import D, write_table


def test_read_round_trips_the_columns(tmp_path, vectors):
    path = write_table(tmp_path / "eval.parquet", vectors, explanations=[f"e{i}" for i in range(12)])
    t = EvalTable.read(path)
    assert len(t) == 12 and t.width == D
    np.testing.assert_array_equal(t.vectors.numpy(), vectors.astype(np.float32))
    assert t.doc_ids[:3] == ["doc0", "doc0", "doc1"] and t.explanations[5] == "e5"
    assert t.sha256 == sha256_file(path)
    sub = t.select([2, 7])
    assert sub.indices.tolist() == [2, 7] and sub.doc_ids == ["doc1", "doc3"]
    np.testing.assert_array_equal(sub.vectors.numpy(), vectors[[2, 7]].astype(np.float32))


def test_variable_length_list_column_of_one_width_is_read(tmp_path, vectors):
    tbl = pa.table(
        {
            "doc_id": ["a", "b"],
            "position": [0, 1],
            "prefix": ["x", "y"],
            "vector": [vectors[0].tolist(), vectors[1].tolist()],
        }
    )
    pq.write_table(tbl, tmp_path / "t.parquet")
    assert EvalTable.read(tmp_path / "t.parquet").width == D
    tbl = tbl.set_column(3, "vector", pa.array([vectors[0].tolist(), vectors[1][:5].tolist()]))
    pq.write_table(tbl, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="different widths"):
        EvalTable.read(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.drop_columns(["prefix"]), r"lacks column\(s\) \['prefix'\]"),
        (lambda t: t.set_column(0, "doc_id", pa.array(["a", None, "c"])), "`doc_id` has 1 null"),
        (lambda t: t.set_column(3, "vector", pa.array(["a", "b", "c"])), "must be a list of floats"),
    ],
)
def test_malformed_tables_are_refused(tmp_path, vectors, mutate, message):
    path = write_table(tmp_path / "t.parquet", vectors[:3])
    pq.write_table(mutate(pq.read_table(path)), path)
    with pytest.raises(DataError, match=message):
        EvalTable.read(path)


def test_bad_vectors_and_files_are_refused(tmp_path, vectors):
    v = vectors[:4].copy()
    v[2, 3] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf in rows \[2\]"):
        EvalTable.read(write_table(tmp_path / "nan.parquet", v))
    v = vectors[:4].copy()
    v[1] = 0
    with pytest.raises(DataError, match=r"all-zero in rows \[1\]"):
        EvalTable.read(write_table(tmp_path / "zero.parquet", v))
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        EvalTable.read(tmp_path / "junk.parquet")
    with pytest.raises(DataError, match="no such eval table"):
        EvalTable.read(tmp_path / "missing.parquet")


def test_wrong_width_for_the_nla_is_refused(tmp_path, metas):
    t = EvalTable.read(write_table(tmp_path / "t.parquet", np.ones((12, 16))))
    with pytest.raises(DataError, match="width 16 but the NLA reads d_model=32"):
        check_against_meta(t, metas[0])


def _sidecar(path, **extraction):
    side = path.with_name(path.name + ".json")
    side.write_text(json.dumps({"kind": "nla_dataset", "extraction": extraction}))
    return side


def test_base_model_aliases_are_the_same_model():
    from hubkit.identity import same_base

    assert same_base("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert same_base("/cache/models/tiny/", "org/Tiny")
    assert not same_base("smollm2-135m", "google/gemma-3-270m")


def test_sidecar_is_found_and_checked_against_the_meta(tmp_path, vectors, metas):
    path = write_table(tmp_path / "eval.parquet", vectors)
    (tmp_path / "eval.json").write_text(
        json.dumps({"schema": "hubkit.eval/1"})
    )  # an eval report, not a sidecar
    assert find_sidecar(path) is None
    side = _sidecar(path, base_model="org/tiny", d_model=D, layer_index=1)
    t = EvalTable.read(path)
    assert t.sidecar_path == side
    check_against_meta(t, metas[0])  # base model compared by its last path part
    _sidecar(path, base_model="tiny", d_model=D, layer_index=3)
    with pytest.raises(DataError, match="layer 3 vs the NLA's 1"):
        check_against_meta(EvalTable.read(path), metas[0])
    _sidecar(path, base_model="other-model", d_model=D, layer_index=1)
    with pytest.raises(DataError, match="base model 'other-model'"):
        check_against_meta(EvalTable.read(path), metas[0])


def test_overlap_with_training_documents_is_refused_unless_forced(tmp_path, vectors):
    t = EvalTable.read(write_table(tmp_path / "eval.parquet", vectors))  # doc0..doc5, two rows each
    train = write_table(tmp_path / "train" / "a.parquet", vectors[:4], doc_ids=["doc1", "x", "y", "doc4"])
    with pytest.raises(DataError, match=r"2 of its 6 documents \(4 rows\) are training documents"):
        check_overlap(t, [train])
    ov = check_overlap(t, [tmp_path / "train"], force=True)  # a folder of parquet files
    assert ov.checked and ov.forced and ov.n_overlap_docs == 2 and ov.n_overlap_rows == 4
    assert ov.examples == ["doc1", "doc4"] and ov.n_train_docs == 4
    clean = write_table(tmp_path / "clean.parquet", vectors[:2], doc_ids=["p", "q"])
    ov = check_overlap(t, [clean])
    assert ov.checked and ov.n_overlap_docs == 0 and ov.sources[0]["sha256"] == sha256_file(clean)
    assert not check_overlap(t, []).checked


def test_overlap_with_doc_ids_listed_in_the_sidecar(tmp_path, vectors):
    path = write_table(tmp_path / "eval.parquet", vectors)
    path.with_name("eval.parquet.json").write_text(
        json.dumps({"kind": "nla_dataset", "train_doc_ids": ["doc2"]})
    )
    with pytest.raises(DataError, match="1 of its 6 documents"):
        check_overlap(EvalTable.read(path))


def test_overlap_with_other_splits_in_a_data_pipeline_sidecar(tmp_path, vectors):
    path = write_table(tmp_path / "eval.parquet", vectors)
    split = {
        "name": "eval",
        "fractions": {},
        "seed": 0,
        "doc_ids": {"eval": [f"doc{i}" for i in range(6)], "av_sft": ["a", "doc5"], "rl": ["b"]},
    }
    side = {
        "schema": "hubkit.dataset/1",
        "table": "eval",
        "split": split,
        "extraction": {"base_model": "tiny", "layer": 1, "d_model": D},
    }
    path.with_name("eval.parquet.json").write_text(json.dumps(side))
    t = EvalTable.read(path)
    with pytest.raises(DataError, match=r"1 of its 6 documents \(2 rows\)"):
        check_overlap(t)
    ov = check_overlap(t, force=True)
    assert sorted(s["key"] for s in ov.sources) == ["split.doc_ids.av_sft", "split.doc_ids.rl"]
    assert ov.n_train_docs == 3 and ov.examples == ["doc5"]


def test_training_table_without_doc_ids_is_refused(tmp_path, vectors):
    t = EvalTable.read(write_table(tmp_path / "eval.parquet", vectors))
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "train.parquet")
    with pytest.raises(DataError, match="cannot read a `doc_id` column"):
        check_overlap(t, [tmp_path / "train.parquet"])
