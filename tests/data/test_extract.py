from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hubkit.data.corpus import Corpus, Document, text_id
from hubkit.data.extract import ExtractConfig, default_layer, extract, sample_positions
from hubkit.data.sidecar import read_sidecar
from hubkit.data.tables import vectors_numpy
from hubkit.errors import DataError
from hubkit.provenance import sha256_file
from hubkit.testing import make_tiny_model


def doc(text: str) -> Document:
    return Document(text_id(text), text)


def _rows(path):
    table = pq.read_table(path)
    return table, vectors_numpy(table.column("vector"), table.schema.field("vector").type.list_size)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_vectors_equal_hidden_states_of_a_full_forward(tmp_path, small_corpus, arch):
    """Early exit at block L == hidden_states[L + 1] of an unpadded full forward, per document."""
    tiny = make_tiny_model(arch, d_model=32, n_layers=3)
    layer = 1
    config = ExtractConfig(
        layer=layer, positions_per_doc=5, min_position=3, max_length=64, batch_size=4, docs_per_chunk=5
    )
    # documents of different lengths, so batches hold right padding
    corpus = Corpus(
        "varied",
        tuple(
            doc(" ".join(d.text.split()[: 4 + 3 * i])) for i, d in enumerate(small_corpus.head(6).documents)
        ),
    )
    out = extract(corpus, tiny.model, tiny.tokenizer, tmp_path / "a.parquet", config, base_model="tiny")
    table, vectors = _rows(out)
    tok = tiny.tokenizer
    special = set(tok.all_special_ids)
    by_doc = {d.doc_id: d.text for d in corpus.documents}
    checked, lengths = 0, set()
    for d_id in dict.fromkeys(table.column("doc_id").to_pylist()):
        ids = ([tok.bos_token_id] + tok(by_doc[d_id], add_special_tokens=False).input_ids)[:64]
        with torch.no_grad():
            hs = tiny.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[
                layer + 1
            ][0]
        lengths.add(len(ids))
        rows = [i for i, x in enumerate(table.column("doc_id").to_pylist()) if x == d_id]
        positions = [table.column("position")[i].as_py() for i in rows]
        assert positions == sorted(set(positions)) and len(positions) == 5
        for i, p in zip(rows, positions):
            assert p >= 3 and ids[p] not in special
            np.testing.assert_allclose(vectors[i], hs[p].numpy(), rtol=1e-4, atol=1e-5)
            assert table.column("token")[i].as_py() == tok.decode([ids[p]])
            assert table.column("prefix")[i].as_py() == tok.decode(ids[: p + 1], skip_special_tokens=True)
            checked += 1
    assert checked == 5 * len(corpus) and len(lengths) == len(corpus)


def test_positions_depend_only_on_seed_and_doc_id(tmp_path, tiny, small_corpus):
    config = ExtractConfig(layer=1, positions_per_doc=3, min_position=2, docs_per_chunk=4)
    full = pq.read_table(
        extract(small_corpus, tiny.model, tiny.tokenizer, tmp_path / "f.parquet", config, base_model="tiny")
    )
    # the same documents in another order, in a smaller corpus, batched differently
    sub = Corpus("sub", tuple(reversed(small_corpus.documents[:5])))
    other = ExtractConfig(layer=1, positions_per_doc=3, min_position=2, docs_per_chunk=2, batch_size=1)
    part, part_vecs = _rows(
        extract(sub, tiny.model, tiny.tokenizer, tmp_path / "p.parquet", other, base_model="tiny")
    )
    full_rows = {
        (d, p): i
        for i, (d, p) in enumerate(
            zip(full.column("doc_id").to_pylist(), full.column("position").to_pylist())
        )
    }
    full_vecs = vectors_numpy(full.column("vector"), 32)
    for j, key in enumerate(zip(part.column("doc_id").to_pylist(), part.column("position").to_pylist())):
        assert key in full_rows
        np.testing.assert_allclose(part_vecs[j], full_vecs[full_rows[key]], rtol=1e-4, atol=1e-5)
    assert part.num_rows == 15
    # another seed draws other positions
    reseeded = pq.read_table(
        extract(
            sub,
            tiny.model,
            tiny.tokenizer,
            tmp_path / "s.parquet",
            ExtractConfig(layer=1, positions_per_doc=3, min_position=2, seed=1),
            base_model="tiny",
        )
    )
    assert reseeded.column("position").to_pylist() != part.column("position").to_pylist()


def test_sample_positions_bounds():
    eligible = list(range(5, 40))
    picks = sample_positions(eligible, 6, seed=3, doc_id="d")
    assert picks == sorted(set(picks)) and len(picks) == 6 and set(picks) <= set(eligible)
    assert picks == sample_positions(eligible, 6, seed=3, doc_id="d")
    assert sample_positions([7, 9], 6, seed=3, doc_id="d") == [7, 9]


def test_special_tokens_in_text_are_never_sampled(tmp_path, tiny):
    text = "<eos> The cat sat <pad> on the mat <eos> and looked at the door <bos> again."
    corpus = Corpus("c", (doc(text),))
    config = ExtractConfig(layer=0, positions_per_doc=100, min_position=0)
    table = pq.read_table(
        extract(corpus, tiny.model, tiny.tokenizer, tmp_path / "a.parquet", config, base_model="tiny")
    )
    ids = [tiny.tokenizer.bos_token_id] + tiny.tokenizer(text, add_special_tokens=False).input_ids
    special = {tiny.tokenizer.bos_token_id, tiny.tokenizer.eos_token_id, tiny.tokenizer.pad_token_id}
    expected = [p for p, t in enumerate(ids) if t not in special]
    assert table.column("position").to_pylist() == expected
    assert len(expected) < len(ids) - 3


def test_sidecar_records_the_run(tmp_path, tiny, small_corpus):
    config = ExtractConfig(layer=2, positions_per_doc=2, min_position=4, seed=7)
    out = extract(
        small_corpus,
        tiny.model,
        tiny.tokenizer,
        tmp_path / "a.parquet",
        config,
        base_model="org/tiny",
        revision="abc123",
    )
    side = read_sidecar(out)
    assert side.table == "activations" and side.rows == pq.ParquetFile(out).metadata.num_rows == 24
    assert side.files == {"a.parquet": sha256_file(out)}
    ext = side.extraction
    assert (ext.base_model, ext.revision, ext.layer, ext.d_model, ext.seed) == (
        "org/tiny",
        "abc123",
        2,
        32,
        7,
    )
    assert (ext.positions_per_doc, ext.min_position) == (2, 4)
    assert side.corpus.sha256 == small_corpus.sha256 and side.corpus.n_docs == 12
    assert not (tmp_path / "a.parquet.parts").exists()


def test_finished_run_is_not_redone_and_changed_settings_are_refused(tmp_path, tiny, small_corpus):
    config = ExtractConfig(layer=1, positions_per_doc=2)
    out = extract(small_corpus, tiny.model, tiny.tokenizer, tmp_path / "a.parquet", config, base_model="tiny")
    before = out.stat().st_mtime_ns
    calls = []
    extract(
        small_corpus,
        tiny.model,
        tiny.tokenizer,
        out,
        config,
        base_model="tiny",
        on_chunk=lambda i, n: calls.append(i),
    )
    assert calls == [] and out.stat().st_mtime_ns == before
    with pytest.raises(DataError, match="different settings"):
        extract(small_corpus, tiny.model, tiny.tokenizer, out, ExtractConfig(layer=2), base_model="tiny")
    extract(
        small_corpus,
        tiny.model,
        tiny.tokenizer,
        out,
        ExtractConfig(layer=2, positions_per_doc=1),
        base_model="tiny",
        overwrite=True,
    )
    assert read_sidecar(out).extraction.layer == 2 and read_sidecar(out).rows == 12


def test_layer_beyond_depth_is_a_clear_error(tmp_path, tiny, small_corpus):
    with pytest.raises(DataError, match=r"layer 3 is beyond .* 3 decoder blocks.*0\.\.2"):
        extract(
            small_corpus,
            tiny.model,
            tiny.tokenizer,
            tmp_path / "a.parquet",
            ExtractConfig(layer=3),
            base_model="tiny",
        )
    assert not (tmp_path / "a.parquet").exists()
    assert default_layer(30) == 20 and default_layer(18) == 12


def test_short_documents(tmp_path, tiny):
    short = Corpus("short", (doc("Hi."), doc("Yes.")))
    with pytest.raises(DataError, match="shorter than the minimum position"):
        extract(
            short,
            tiny.model,
            tiny.tokenizer,
            tmp_path / "a.parquet",
            ExtractConfig(layer=1, min_position=20),
            base_model="tiny",
        )
    mixed = Corpus(
        "mixed", (doc("Hi."), doc("The cat sat on the mat and looked at the door for a long time."))
    )
    with pytest.raises(DataError, match="no non-special token at position >= min_position=10"):
        extract(
            mixed,
            tiny.model,
            tiny.tokenizer,
            tmp_path / "b.parquet",
            ExtractConfig(layer=1, min_position=10, skip_short=False),
            base_model="tiny",
        )
    out = extract(
        mixed,
        tiny.model,
        tiny.tokenizer,
        tmp_path / "c.parquet",
        ExtractConfig(layer=1, min_position=10, positions_per_doc=2),
        base_model="tiny",
    )
    assert set(pq.read_table(out).column("doc_id").to_pylist()) == {mixed.documents[1].doc_id}


def test_bad_config_values():
    with pytest.raises(DataError, match="min_position"):
        ExtractConfig(layer=1, min_position=200, max_length=128)
    with pytest.raises(DataError, match="positions_per_doc"):
        ExtractConfig(layer=1, positions_per_doc=0)
