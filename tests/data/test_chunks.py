from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubkit.data.chunks import MANIFEST_FILE, ChunkStore, chunk_name, parts_dir, run_chunked
from hubkit.errors import DataError

SCHEMA = pa.schema([pa.field("unit", pa.int32()), pa.field("row", pa.int32())])


def unit_rows(i: int) -> pa.Table:
    """Unit i has i % 3 rows (some units are empty)."""
    n = i % 3
    return pa.table(
        {"unit": pa.array([i] * n, pa.int32()), "row": pa.array(range(n), pa.int32())}, schema=SCHEMA
    )


def expected(n_units: int) -> list[tuple[int, int]]:
    return [(i, r) for i in range(n_units) for r in range(i % 3)]


def rows_of(path) -> list[tuple[int, int]]:
    t = pq.read_table(path)
    return list(zip(t.column("unit").to_pylist(), t.column("row").to_pylist()))


def test_run_writes_every_unit_once_in_order(tmp_path):
    out = run_chunked(tmp_path / "t.parquet", {"a": 1}, 7, unit_rows, SCHEMA)
    assert rows_of(out) == expected(7)
    assert not parts_dir(out).exists()


def test_resume_after_an_interruption_at_each_point(tmp_path):
    """What a kill can leave: finished chunks, a renamed chunk not yet in the manifest, a half-written .tmp."""
    out = tmp_path / "t.parquet"
    store = ChunkStore(parts_dir(out), {"a": 1}, 6)
    for i in (0, 1):
        store.write(i, unit_rows(i))
    folder = parts_dir(out)
    pq.write_table(unit_rows(2), folder / chunk_name(2))  # renamed, manifest not updated
    (folder / (chunk_name(3) + ".tmp")).write_bytes(b"half a parquet file")  # killed while writing
    (folder / (MANIFEST_FILE + ".tmp")).write_text("{")  # killed while replacing the manifest
    done = []
    path = run_chunked(out, {"a": 1}, 6, lambda i: done.append(i) or unit_rows(i), SCHEMA)
    assert done == [2, 3, 4, 5]
    assert rows_of(path) == expected(6)


def test_recorded_chunk_that_vanished_is_redone(tmp_path):
    out = tmp_path / "t.parquet"
    store = ChunkStore(parts_dir(out), {"a": 1}, 3)
    for i in range(3):
        store.write(i, unit_rows(i))
    (parts_dir(out) / chunk_name(1)).unlink()
    assert ChunkStore(parts_dir(out), {"a": 1}, 3).pending() == [1]


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "t.parquet"
    ChunkStore(parts_dir(out), {"a": 1, "b": "x"}, 3).write(0, unit_rows(0))
    with pytest.raises(DataError, match=r"different settings \(differs in: b\)"):
        ChunkStore(parts_dir(out), {"a": 1, "b": "y"}, 3)
    manifest = json.loads((parts_dir(out) / MANIFEST_FILE).read_text())
    assert list(manifest["chunks"]) == ["0"]
