from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hubkit.constants import DATASET_SCHEMA_VERSION
from hubkit.data.sidecar import (
    SIDECAR_SUFFIX,
    CorpusInfo,
    DatasetSidecar,
    ExtractionInfo,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from hubkit.errors import DataError
from hubkit.provenance import sha256_file


def _sidecar() -> DatasetSidecar:
    return DatasetSidecar(
        table="activations",
        rows=2,
        extraction=ExtractionInfo(base_model="org/base", layer=3, d_model=8, seed=1),
        corpus=CorpusInfo(name="bundled", sha256="ab" * 32, n_docs=1),
    )


def test_round_trip_records_the_parquet_hash(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    written = write_sidecar(path, _sidecar())
    assert written == sidecar_path(path) == tmp_path / ("t.parquet" + SIDECAR_SUFFIX)
    data = json.loads(written.read_text())
    assert data["schema"] == DATASET_SCHEMA_VERSION and data["files"] == {"t.parquet": sha256_file(path)}
    back = read_sidecar(path)
    assert back.extraction == _sidecar().extraction and back.corpus == _sidecar().corpus
    assert back.created and back.files["t.parquet"] == sha256_file(path)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_reads_the_reference_dialect(tmp_path, fmt):
    legacy = {
        "kind": "nla_dataset",
        "extraction": {
            "base_model": "Qwen/Qwen3-8B",
            "d_model": 4096,
            "layer_index": 24,
            "corpus": "fineweb-sample",
            "positions_per_doc": 16,
        },
        "git_commit": "deadbeef",
        "n_rows": 1000,
    }
    path = tmp_path / "sidecar.json"
    path.write_text(yaml.safe_dump(legacy) if fmt == "yaml" else json.dumps(legacy))
    side = read_sidecar(path)
    assert (side.extraction.base_model, side.extraction.d_model, side.extraction.layer) == (
        "Qwen/Qwen3-8B",
        4096,
        24,
    )
    assert side.extraction.positions_per_doc == 16 and side.extraction.seed is None
    assert side.corpus.name == "fineweb-sample" and side.rows == 1000 and side.git_commit == "deadbeef"
    assert side.legacy == legacy


def test_bad_sidecars_name_the_problem(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(DataError, match="no sidecar beside the table"):
        read_sidecar(path)
    side = sidecar_path(path)
    side.write_text(json.dumps({"kind": "nla_dataset", "extraction": {"base_model": "b", "d_model": 8}}))
    with pytest.raises(DataError, match=r"`extraction.layer_index` is required"):
        read_sidecar(path)
    side.write_text(json.dumps({"schema": "something/9"}))
    with pytest.raises(DataError, match="unknown dataset sidecar schema"):
        read_sidecar(path)
    data = json.loads(write_sidecar(path, _sidecar()).read_text())
    data["extraction"]["layr"] = 3
    side.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"`extraction.layr` is not a known field"):
        read_sidecar(path)
