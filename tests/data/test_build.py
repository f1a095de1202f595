from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from hubkit.data.build import build_from_dirs, build_tables
from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.label import label_table
from hubkit.data.labelers import OpenAIChatLabeler
from hubkit.data.sidecar import read_sidecar, write_sidecar
from hubkit.data.split import split_table
from hubkit.data.tables import vector_array, vectors_numpy
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

from .chat_server import ChatServer


@pytest.fixture(scope="module")
def stages(tmp_path_factory, tiny):
    """extract → split → label (av_sft, ar_sft, eval) on 12 documents; returns the folders."""
    from hubkit.data.corpus import load_corpus

    root = tmp_path_factory.mktemp("pipeline")
    server = ChatServer()
    server.thread.start()
    try:
        act = extract(
            load_corpus("bundled", limit=12),
            tiny.model,
            tiny.tokenizer,
            root / "activations.parquet",
            ExtractConfig(layer=1, positions_per_doc=2, min_position=2),
            base_model="tiny",
        )
        splits = split_table(act, root / "splits", {"av_sft": 0.25, "ar_sft": 0.25, "rl": 0.25, "eval": 0.25})
        labeler = OpenAIChatLabeler(server.base_url, "m")
        for name in ("av_sft", "ar_sft", "eval"):
            label_table(splits[name], root / "labeled" / f"{name}.parquet", labeler)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    return root


def test_built_tables_have_the_agreed_columns_and_rows(stages, tmp_path):
    paths = build_from_dirs(stages / "splits", stages / "labeled", tmp_path / "built")
    expected_columns = {
        "av_sft": ["doc_id", "position", "vector", "explanation"],
        "ar_sft": ["doc_id", "position", "explanation", "vector"],
        "rl": ["doc_id", "position", "prefix", "vector"],
        "eval": ["doc_id", "position", "prefix", "vector", "explanation"],
    }
    for name, columns in expected_columns.items():
        table = pq.read_table(paths[name])
        assert table.column_names == columns, name
        assert table.schema.field("vector").type == pa.list_(pa.float32(), 32)
        source_dir = "splits" if name == "rl" else "labeled"
        source = pq.read_table(stages / source_dir / f"{name}.parquet")
        assert table.column("doc_id").equals(source.column("doc_id"))
        np.testing.assert_array_equal(
            vectors_numpy(table.column("vector"), 32), vectors_numpy(source.column("vector"), 32)
        )
        side = read_sidecar(paths[name])
        assert side.table == name and side.rows == table.num_rows == 6
        assert side.files == {f"{name}.parquet": sha256_file(paths[name])}
        assert side.parents == {f"{name}.parquet": sha256_file(stages / source_dir / f"{name}.parquet")}
        assert side.split.name == name and side.extraction.layer == 1
    av = pq.read_table(paths["av_sft"])
    plain = pq.read_table(stages / "labeled" / "av_sft.parquet").column("explanation").to_pylist()
    assert av.column("explanation").to_pylist() == [f"<explanation>{t}</explanation>" for t in plain]
    assert read_sidecar(paths["av_sft"]).explanation_format == "tagged"
    ar = pq.read_table(paths["ar_sft"])
    assert ar.column("explanation").equals(
        pq.read_table(stages / "labeled" / "ar_sft.parquet").column("explanation")
    )
    assert read_sidecar(paths["ar_sft"]).explanation_format == "plain"
    assert read_sidecar(paths["ar_sft"]).labeling.labeler == "openai:m"


def _rewrite(path, table):
    """Replace a table's content and refresh its sidecar (so only the content is wrong, not the hashes)."""
    side = read_sidecar(path)
    pq.write_table(table, path)
    side.rows = table.num_rows
    write_sidecar(path, side)


def _copy(stages, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(stages / "splits", work / "splits")
    shutil.copytree(stages / "labeled", work / "labeled")
    return work


def test_failed_labels_are_dropped_but_empty_explanations_are_errors(stages, tmp_path):
    work = _copy(stages, tmp_path)
    path = work / "labeled" / "av_sft.parquet"
    table = pq.read_table(path)
    status = table.column("label_status").to_pylist()
    text = table.column("explanation").to_pylist()
    status[0], text[0] = "failed", ""
    table = table.set_column(table.column_names.index("label_status"), "label_status", pa.array(status))
    table = table.set_column(table.column_names.index("explanation"), "explanation", pa.array(text))
    _rewrite(path, table)
    built = build_from_dirs(work / "splits", work / "labeled", tmp_path / "b1")
    assert read_sidecar(built["av_sft"]).rows == 5
    text[1] = "   "
    _rewrite(path, table.set_column(table.column_names.index("explanation"), "explanation", pa.array(text)))
    with pytest.raises(DataError, match=r"1 rows have an empty `explanation`"):
        build_from_dirs(work / "splits", work / "labeled", tmp_path / "b2")


def test_wrong_vector_width_is_refused(stages, tmp_path):
    work = _copy(stages, tmp_path)
    path = work / "labeled" / "ar_sft.parquet"
    table = pq.read_table(path)
    wide = vector_array(np.zeros((table.num_rows, 48), np.float32))
    pq.write_table(table.set_column(table.column_names.index("vector"), "vector", wide), path)
    with pytest.raises(DataError, match=r"ar_sft.parquet: column `vector` holds vectors of width 48"):
        build_from_dirs(work / "splits", work / "labeled", tmp_path / "b")


def test_documents_shared_between_tables_are_refused(stages, tmp_path):
    with pytest.raises(DataError, match="is in both"):
        build_tables(
            tmp_path / "b",
            {"rl": stages / "splits" / "av_sft.parquet", "av_sft": stages / "labeled" / "av_sft.parquet"},
        )


def test_tables_from_different_extractions_are_refused(stages, tmp_path):
    work = _copy(stages, tmp_path)
    path = work / "splits" / "rl.parquet"
    side = read_sidecar(path)
    side.extraction.layer = 2
    write_sidecar(path, side)
    with pytest.raises(DataError, match="different extractions: layer 2 vs 1"):
        build_from_dirs(work / "splits", work / "labeled", tmp_path / "b")


def test_missing_inputs_say_what_to_run(stages, tmp_path):
    work = _copy(stages, tmp_path)
    (work / "labeled" / "ar_sft.parquet").unlink()
    with pytest.raises(DataError, match="label the ar_sft split first"):
        build_from_dirs(work / "splits", work / "labeled", tmp_path / "b")
    with pytest.raises(DataError, match="has no `explanation` column; label it first"):
        build_tables(tmp_path / "b", {"av_sft": work / "splits" / "av_sft.parquet"})
    with pytest.raises(DataError, match="tables must be some of"):
        build_tables(tmp_path / "b", {"train": work / "splits" / "av_sft.parquet"})


def test_unlabeled_eval_has_no_explanation(stages, tmp_path):
    built = build_tables(tmp_path / "b", {"eval": stages / "splits" / "eval.parquet"})
    assert pq.read_table(built["eval"]).column_names == ["doc_id", "position", "prefix", "vector"]
    assert read_sidecar(built["eval"]).explanation_format is None
    assert pc.all(pc.greater_equal(pq.read_table(built["eval"]).column("position"), 2)).as_py()
