from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.sidecar import read_sidecar
from hubkit.data.split import parse_fractions, split_doc_ids, split_table
from hubkit.data.tables import SPLITS, vector_array
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

FRACTIONS = {"av_sft": 0.4, "ar_sft": 0.3, "rl": 0.2, "eval": 0.1}


def test_every_document_in_exactly_one_split_with_exact_counts():
    ids = [f"doc{i}" for i in range(97)]
    out = split_doc_ids(ids, FRACTIONS, seed=0)
    assert sorted(d for docs in out.values() for d in docs) == sorted(ids)
    counts = {k: len(v) for k, v in out.items()}
    assert sum(counts.values()) == 97
    # largest remainder: each count is floor or ceil of fraction * n
    for name, frac in FRACTIONS.items():
        assert int(frac * 97) <= counts[name] <= int(frac * 97) + 1


def test_split_is_deterministic_and_order_free_and_depends_on_seed():
    ids = [f"doc{i}" for i in range(50)]
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    a = split_doc_ids(ids, FRACTIONS, seed=3)
    assert a == split_doc_ids(shuffled + ids[:5], FRACTIONS, seed=3)  # order and repeats do not matter
    assert a != split_doc_ids(ids, FRACTIONS, seed=4)


def test_bad_fractions_are_refused():
    with pytest.raises(DataError, match="add up to 1"):
        split_doc_ids(["a"], {"av_sft": 0.5, "ar_sft": 0.4})
    with pytest.raises(DataError, match="unknown split"):
        split_doc_ids(["a"], {"train": 1.0})
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        split_doc_ids(["a"], {"av_sft": 1.5, "ar_sft": -0.5})
    with pytest.raises(DataError, match="NAME=FRACTION"):
        parse_fractions("av_sft:0.5")
    assert parse_fractions("av_sft=0.5, ar_sft=0.5") == {"av_sft": 0.5, "ar_sft": 0.5, "rl": 0.0, "eval": 0.0}


def test_split_table_partitions_rows_by_document(tmp_path, tiny, small_corpus):
    act = extract(
        small_corpus,
        tiny.model,
        tiny.tokenizer,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=3, min_position=2),
        base_model="tiny",
    )
    paths = split_table(act, tmp_path / "splits", FRACTIONS, seed=5)
    source = pq.read_table(act)
    doc_rows = Counter(source.column("doc_id").to_pylist())
    seen: dict[str, str] = {}
    total = 0
    expected = split_doc_ids(doc_rows, FRACTIONS, seed=5)
    for name in SPLITS:
        table = pq.read_table(paths[name])
        docs = set(table.column("doc_id").to_pylist())
        assert docs == set(expected[name])
        for d in docs:
            assert d not in seen, f"{d} in {seen.get(d)} and {name}"
            seen[d] = name
            assert table.column("doc_id").to_pylist().count(d) == doc_rows[d]  # all of a document's rows
        assert table.schema.equals(source.schema)
        total += table.num_rows
        side = read_sidecar(paths[name])
        assert side.table == "split" and side.rows == table.num_rows
        assert side.split.name == name and side.split.seed == 5 and side.split.doc_ids == expected
        assert side.split.fractions == FRACTIONS
        assert side.parents == {"act.parquet": sha256_file(act)}
        assert side.extraction == read_sidecar(act).extraction
    assert total == source.num_rows and set(seen) == set(doc_rows)


def test_split_checks_the_vector_width_against_the_sidecar(tmp_path, tiny, small_corpus):
    act = extract(
        small_corpus,
        tiny.model,
        tiny.tokenizer,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=1),
        base_model="tiny",
    )
    table = pq.read_table(act)
    narrow = table.set_column(4, "vector", vector_array(np.zeros((table.num_rows, 16), np.float32)))
    pq.write_table(narrow, act)
    with pytest.raises(DataError, match="width 16, but the sidecar says d_model = 32"):
        split_table(act, tmp_path / "splits")
    pq.write_table(
        table.set_column(4, "vector", pa.array(table.column("vector").to_pylist(), pa.list_(pa.float32()))),
        act,
    )
    with pytest.raises(DataError, match="expected fixed_size_list"):
        split_table(act, tmp_path / "splits")
