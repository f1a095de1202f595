"""`hubkit eval --trajectory … --spliced-loss`: each checkpoint's fraction of loss recovered reaches the summary
(with its interval) and the trajectory plot; pair-only sections are still refused with --trajectory."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hubkit import heads
from hubkit.checkpoint import write_checkpoint
from hubkit.cli import main
from hubkit.meta import Training

from .conftest import D, write_table


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny, metas):
    root = tmp_path_factory.mktemp("traj-spliced")
    av_meta, ar_meta = metas
    ar = write_checkpoint(root / "ar", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D))
    for step, loss in ((10, 3.0), (20, 2.0), (30, 1.2)):
        meta = av_meta.with_updates(training=Training(stage="av_sft", step=step, loss=loss))
        write_checkpoint(root / "run" / f"step_{step:06d}", tiny.model, tiny.tokenizer, meta)
    return root / "run", ar


def test_trajectory_carries_spliced_loss(tmp_path, run_dir, vectors):
    run, ar = run_dir
    table = write_table(tmp_path / "eval.parquet", vectors)
    out = tmp_path / "out"
    base = run / "step_000010"  # full weights of the tiny base itself
    args = ["eval", "--trajectory", run, "--ar", ar, "--table", table, "--out", out, "--spliced-loss"]
    args += ["--base-model", base, "--max-new-tokens", 4, "--n-boot", 100]
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    assert res.output.count("spliced loss recovered") == 3
    top = json.loads((out / "eval.json").read_text())
    for point in top["figures"]["trajectory"]["checkpoints"]:
        sub = json.loads((out / point["name"] / "eval.json").read_text())["figures"]["spliced_loss"]
        assert point["spliced_loss"]["frac_recovered"] == pytest.approx(sub["frac_recovered"])
        assert point["spliced_loss"]["ci_low"] == pytest.approx(sub["frac_recovered_ci_low"])
    assert (out / top["outputs"]["plots"]["trajectory"]["path"]).stat().st_size > 0


def test_pair_only_sections_are_refused_with_a_trajectory(tmp_path, run_dir, vectors):
    run, ar = run_dir
    table = write_table(tmp_path / "eval.parquet", vectors)
    args = [
        "eval",
        "--trajectory",
        run,
        "--ar",
        ar,
        "--table",
        table,
        "--out",
        tmp_path / "o",
        "--claim-ablation",
    ]
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2 and "--spliced-loss works with both" in res.output
