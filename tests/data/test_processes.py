"""extract, label (transformers labeler) and eval on two processes of a torchrun: one result, equal to one process.

One launch runs the three commands (tests/data/stages_driver.py) under torchrun, the other in one
plain process; the activations and the eval rows must be byte-identical, the labeled table equal
row for row (only `labeled_at`, a wall-clock time, may differ), and the sidecars equal but for their
creation time and the file names they list.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hubkit.train.loop import RunOptions

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "data" / "stages_driver.py"
TIME_FIELDS = {"created", "first_labeled_at", "last_labeled_at"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A tiny base (d=32, 2 blocks) and an AV + AR trained on it for one step (ordinary checkpoints)."""
    import torch
    from train.train_helpers import TEXTS, make_recipe, write_sft  # tests/ is on sys.path (rootdir packages)

    from hubkit.testing import make_tiny_model
    from hubkit.train.sft_ar import train_ar
    from hubkit.train.sft_av import train_av

    root = tmp_path_factory.mktemp("stages")
    base = make_tiny_model("llama", d_model=32, n_layers=2, seed=0).save(root / "base")
    table = write_sft(
        root / "sft.parquet", torch.randn(len(TEXTS), 32, generator=torch.Generator().manual_seed(0)), TEXTS
    )
    stage = {"data": str(table), "steps": 1, "micro_batch_size": 4, "adapter": {"r": 4}}
    av = train_av(make_recipe(base, root / "run", av=stage), RunOptions(quiet=True))
    ar = train_ar(make_recipe(base, root / "run", ar=stage), RunOptions(quiet=True))
    return base, av, ar


def _sidecar(path: Path) -> dict:
    data = json.loads(path.with_name(path.name + ".json").read_text())
    return _drop(data)


def _drop(obj):
    if isinstance(obj, dict):
        return {k: _drop(v) for k, v in obj.items() if k not in TIME_FIELDS and k != "files"}
    return obj


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_processes_write_what_one_writes(pair, tmp_path):
    base, av, ar = pair
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    args = [str(base), str(av), str(ar)]
    one = subprocess.run(
        [sys.executable, str(DRIVER), str(tmp_path / "one"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run(
        ["torchrun", "--nproc_per_node", "2", str(DRIVER), str(tmp_path / "two"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = tmp_path / "one", tmp_path / "two"

    assert (a / "acts.parquet").read_bytes() == (b / "acts.parquet").read_bytes()
    assert (
        pq.read_table(a / "acts.parquet").num_rows == 12
    )  # 6 documents x 2 positions, 6 chunks over 2 ranks
    assert _sidecar(a / "acts.parquet") == _sidecar(b / "acts.parquet")

    la, lb = pq.read_table(a / "labeled.parquet"), pq.read_table(b / "labeled.parquet")
    assert la.column_names == lb.column_names and la.num_rows == lb.num_rows == 12
    for name in la.column_names:
        if name != "labeled_at":
            assert la.column(name).to_pylist() == lb.column(name).to_pylist(), name
    assert _sidecar(a / "labeled.parquet") == _sidecar(b / "labeled.parquet")

    assert (a / "eval" / "rows.parquet").read_bytes() == (b / "eval" / "rows.parquet").read_bytes()
    ea, eb = (json.loads((d / "eval" / "eval.json").read_text()) for d in (a, b))
    assert ea["figures"] == eb["figures"] and ea["verdicts"] == eb["verdicts"]
    assert not (b / "acts.parquet.parts").exists()  # rank 0 merged and cleaned up
