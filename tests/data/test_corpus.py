from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubkit.data.corpus import bundled_path, load_corpus, text_id
from hubkit.errors import DataError


def test_bundled_corpus_is_real_text_with_unique_ids_and_a_licence():
    corpus = load_corpus("bundled")
    assert len(corpus) >= 200
    ids = [d.doc_id for d in corpus.documents]
    assert len(set(ids)) == len(ids)
    assert all(len(d.text.split()) >= 20 for d in corpus.documents)
    assert bundled_path().stat().st_size < 500_000
    readme = (bundled_path().parent / "README.md").read_text()
    assert "Licence" in readme and "CC0" in readme


def test_txt_paragraphs_become_documents_with_content_ids(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(
        "First paragraph here.\nStill first.\n\n\nSecond one.\n\nFirst paragraph here.\nStill first.\n"
    )
    corpus = load_corpus(path)
    assert [d.text for d in corpus.documents] == ["First paragraph here.\nStill first.", "Second one."]
    assert corpus.documents[1].doc_id == hashlib.sha256(b"Second one.").hexdigest()[:16]
    # the id depends on the text only, not on the file or the order
    other = tmp_path / "d.txt"
    other.write_text("Second one.\n")
    assert load_corpus(other).documents[0].doc_id == corpus.documents[1].doc_id


def test_corpus_sha_changes_with_content(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\n\ntwo\n")
    b.write_text("one\n\ntwo!\n")
    assert load_corpus(a).sha256 != load_corpus(b).sha256
    assert load_corpus(a).sha256 == load_corpus(a).sha256


def test_jsonl_with_id_field_and_limit(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"key": f"k{i}", "body": f"text number {i}"} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = load_corpus(path, text_field="body", id_field="key", limit=3)
    assert [(d.doc_id, d.text) for d in corpus.documents] == [(f"k{i}", f"text number {i}") for i in range(3)]


def test_parquet_and_saved_dataset_and_folder(tmp_path):
    import datasets

    table = pa.table({"text": ["alpha beta", "gamma delta", ""]})
    pq.write_table(table, tmp_path / "c.parquet")
    assert [d.text for d in load_corpus(tmp_path / "c.parquet").documents] == ["alpha beta", "gamma delta"]
    datasets.Dataset.from_dict({"text": ["saved one", "saved two"]}).save_to_disk(str(tmp_path / "saved"))
    assert [d.text for d in load_corpus(tmp_path / "saved").documents] == ["saved one", "saved two"]
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.txt").write_text("from b")
    (folder / "a.jsonl").write_text(json.dumps({"text": "from a"}) + "\n")
    assert [d.text for d in load_corpus(folder).documents] == ["from a", "from b"]


def test_duplicate_texts_kept_once_duplicate_ids_refused(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": i % 2, "text": f"t{i}"}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match="appears twice"):
        load_corpus(path, id_field="id")
    path.write_text("".join(json.dumps({"text": "same"}) + "\n" for _ in range(3)))
    assert [d.doc_id for d in load_corpus(path).documents] == [text_id("same")]


@pytest.mark.parametrize("content", ["", "\n\n   \n\n", json.dumps({"text": "   "}) + "\n"])
def test_empty_corpus_is_a_clear_error(tmp_path, content):
    path = tmp_path / ("c.jsonl" if content.startswith("{") else "c.txt")
    path.write_text(content)
    with pytest.raises(DataError, match="no documents"):
        load_corpus(path)


def test_bad_sources_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no such corpus"):
        load_corpus(tmp_path / "missing.jsonl")
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match="no `text` field"):
        load_corpus(path)
    path.write_text("{not json\n")
    with pytest.raises(DataError, match=r"c.jsonl:1: not valid JSON"):
        load_corpus(path)
