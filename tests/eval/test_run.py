import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from hubkit import heads
from hubkit.checkpoint import write_checkpoint
from hubkit.errors import DataError, IncompatiblePairError
from hubkit.eval.ablations import reconstruct_unique
from hubkit.eval.generation import Generation
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import read_eval, read_eval_json, verify
from hubkit.eval.trajectory import evaluate_trajectory
from hubkit.meta import Training
from hubkit.pair import NLAPair
from hubkit.verbalizer import Explanation

from .conftest import ConstantAR, D, OracleAR, write_table

FAST = dict(generation=Generation(max_new_tokens=6), n_boot=200)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cos_rows(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)])


class IndexAV:
    """An AV double that names the nearest eval vector ("item i"); rows in `broken` get unparsable output."""

    def __init__(self, meta, table_vectors, broken=()):
        self.meta = meta
        self.table = np.asarray(table_vectors, float)
        self.broken = set(broken)

    def explain_detailed(self, v, **_):
        v = v.double().numpy()
        sims = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (
            self.table / np.linalg.norm(self.table, axis=1)[:, None]
        ).T
        out = []
        for i in sims.argmax(axis=1):
            if i in self.broken:
                out.append(Explanation(text="", raw="", status="empty", n_tokens=0))
            else:
                out.append(
                    Explanation(
                        text=f"item {i}", raw=f"<explanation>item {i}</explanation>", status="ok", n_tokens=4
                    )
                )
        return out


def double_pair(metas, vectors, ar, broken=()):
    ar.meta = metas[1]
    return SimpleNamespace(av=IndexAV(metas[0], vectors, broken), ar=ar)


def test_report_numbers_agree_with_independent_computation(tmp_path, tiny_pair, vectors):
    table = write_table(tmp_path / "eval.parquet", vectors, explanations=[f"label {i}" for i in range(12)])
    rep = evaluate_pair(
        tiny_pair,
        table,
        out_dir=tmp_path / "out",
        generation=Generation(max_new_tokens=6, seed=1),
        n_boot=200,
    )
    data = read_eval_json(tmp_path / "out")
    rows = pq.read_table(tmp_path / "out" / "rows.parquet").to_pandas()
    v_hat = tiny_pair.ar.reconstruct(list(rows["explanation"])).double().numpy()
    np.testing.assert_allclose(rows["cos"], cos_rows(vectors, v_hat), atol=1e-5)
    rt = data["figures"]["round_trip"]
    assert rt["all"]["cos"]["mean"] == pytest.approx(rows["cos"].mean())
    assert rt["all"]["cos"]["n"] == 12 and rt["all"]["nmse"]["mean"] == pytest.approx(
        (2 * (1 - rows["cos"])).mean()
    )
    n_ok = int((rows["status"] == "ok").sum())
    assert rt["valid_only"]["n"] == n_ok and rt["n_excluded"] == 12 - n_ok
    assert sum(rt["statuses"].values()) == 12
    ident = data["figures"]["identification"]
    assert ident["top"][0]["accuracy"] == pytest.approx((rows["rank"] == 0).mean())
    assert ident["top"][1]["chance"] == pytest.approx(5 / 12)
    ref = data["figures"]["content_sensitivity"]["reference"]
    ref_hat = tiny_pair.ar.reconstruct([f"label {i}" for i in range(12)]).double().numpy()
    assert ref["real"]["mean"] == pytest.approx(cos_rows(vectors, ref_hat).mean(), abs=1e-5)
    assert data["figures"]["diversity"]["distinct"] == rows["explanation"].nunique()
    assert data["generation"]["max_new_tokens"] == 6 and data["seed"] == 1
    assert data["provenance"]["libraries"]["torch"] and "commit" in data["provenance"]["git"]
    # every hash in eval.json is the file's
    assert data["inputs"]["table"]["sha256"] == sha(table)
    for rec in [data["outputs"]["rows"], *data["outputs"]["plots"].values()]:
        assert sha(tmp_path / "out" / rec["path"]) == rec["sha256"]
    assert set(data["outputs"]["plots"]) == {
        "per_row_cosine",
        "ablations",
        "identification",
        "ablations_reference",
    }
    assert verify(tmp_path / "out") == []
    assert rep.verdicts.to_dict() == data["verdicts"]


def test_reading_and_blind_nlas_are_told_apart(metas, vectors):
    rng = np.random.default_rng(4)
    oracle = OracleAR({f"item {i}": v for i, v in enumerate(vectors)}, other=rng.normal(size=D))
    good = evaluate_pair(double_pair(metas, vectors, oracle), _table(vectors), plots=False, **FAST)
    assert good.verdicts.reads_vectors and good.verdicts.ar_content == "reads_input"
    assert good.figures.identification.at(1).accuracy == 1.0
    assert good.figures.noise_floor.frac_above == 1.0
    blind = evaluate_pair(
        double_pair(metas, vectors, ConstantAR(rng.normal(size=D))), _table(vectors), plots=False, **FAST
    )
    assert not blind.verdicts.reads_vectors and blind.verdicts.ar_content == "ignores_input"
    assert blind.figures.identification.at(1).hits == 1
    assert blind.verdicts.input_independent_share == pytest.approx(1.0)


def _table(vectors, **kw):
    import torch

    from hubkit.eval.table import EvalTable

    n = len(vectors)
    return EvalTable(
        path=None,
        sha256=None,
        doc_ids=[f"d{i}" for i in range(n)],
        positions=np.arange(n),
        prefixes=[""] * n,
        vectors=torch.tensor(vectors, dtype=torch.float32),
        **kw,
    )


def test_unparsed_outputs_are_counted_and_headlined_both_ways(metas, vectors):
    oracle = OracleAR({f"item {i}": v for i, v in enumerate(vectors)}, other=np.ones(D))
    rep = evaluate_pair(
        double_pair(metas, vectors, oracle, broken={0, 3, 5}), _table(vectors), plots=False, **FAST
    )
    rt = rep.figures.round_trip
    assert rt.statuses == {"ok": 9, "no_tags": 0, "unclosed": 0, "empty": 3} and rt.n_excluded == 3
    assert rt.valid_only.cos.n == 9 and rt.valid_only.cos.mean == pytest.approx(1.0)
    want_all = (9 + cos_rows(vectors[[0, 3, 5]], np.ones((3, D))).sum()) / 12
    assert rt.all.cos.mean == pytest.approx(want_all)
    assert rep.rows.column("status").to_pylist().count("empty") == 3


def test_bad_inputs_are_refused(tmp_path, tiny_pair, vectors, metas):
    table = write_table(tmp_path / "eval.parquet", vectors)
    with pytest.raises(DataError, match="statistics need at least 10"):
        evaluate_pair(tiny_pair, table, rows=8, **FAST)
    with pytest.raises(DataError, match="asked for 13 rows but the eval table has 12"):
        evaluate_pair(tiny_pair, table, rows=13, **FAST)
    with pytest.raises(DataError, match="width 16"):
        evaluate_pair(tiny_pair, write_table(tmp_path / "narrow.parquet", vectors[:, :16]), **FAST)
    train = write_table(tmp_path / "train.parquet", vectors[:2], doc_ids=["doc0", "zz"])
    with pytest.raises(DataError, match="training documents"):
        evaluate_pair(tiny_pair, table, train_tables=[train], **FAST)
    (tmp_path / "eval.parquet.json").write_text(
        json.dumps({"kind": "nla_dataset", "extraction": {"layer_index": 0}})
    )
    with pytest.raises(DataError, match="layer 0 vs the NLA's 1"):
        evaluate_pair(tiny_pair, table, **FAST)


def test_forced_overlap_is_recorded(tmp_path, tiny_pair, vectors):
    table = write_table(tmp_path / "eval.parquet", vectors)
    train = write_table(tmp_path / "train.parquet", vectors[:2], doc_ids=["doc0", "zz"])
    evaluate_pair(
        tiny_pair,
        table,
        train_tables=[train],
        force_overlap=True,
        rows=10,
        out_dir=tmp_path / "o",
        plots=False,
        **FAST,
    )
    ov = read_eval_json(tmp_path / "o")["overlap"]
    assert ov["forced"] and ov["n_overlap_docs"] == 1 and ov["sources"][0]["sha256"] == sha(train)
    sel = read_eval_json(tmp_path / "o")["inputs"]["table"]["selection"]
    rows = pq.read_table(tmp_path / "o" / "rows.parquet").column("row").to_pylist()
    assert sel == {"method": "seeded_sample", "n": 10, "seed": 0} and len(set(rows)) == 10


# -- real checkpoints on disk ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny, metas):
    root = tmp_path_factory.mktemp("ckpts")
    av_meta, ar_meta = metas
    ar = write_checkpoint(root / "ar", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D))
    run = root / "run"
    for step, loss in ((10, 3.0), (20, 2.0), (30, 1.2)):
        meta = av_meta.with_updates(training=Training(stage="av_sft", step=step, loss=loss))
        write_checkpoint(run / f"step_{step:06d}", tiny.model, tiny.tokenizer, meta)
    bad_meta = ar_meta.with_updates(layer=0)
    bad = write_checkpoint(
        root / "ar_layer0", tiny.model, tiny.tokenizer, bad_meta, head=heads.identity_head(D)
    )
    return SimpleNamespace(av=run / "step_000010", ar=ar, run=run, bad_ar=bad)


def test_cli_on_real_checkpoints_hashes_every_file(tmp_path, ckpts, vectors):
    from click.testing import CliRunner

    from hubkit.cli.eval import eval_command

    table = write_table(tmp_path / "eval.parquet", vectors)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        eval_command,
        [
            "--av",
            str(ckpts.av),
            "--ar",
            str(ckpts.ar),
            "--table",
            str(table),
            "--out",
            str(out),
            "--max-new-tokens",
            "4",
            "--n-boot",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "round trip (all rows, n=12)" in res.output and "identification: top-1" in res.output
    data = read_eval_json(out)
    for name, folder in (("av", ckpts.av), ("ar", ckpts.ar)):
        rec = data["inputs"]["checkpoints"][name]
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        assert sorted(rec["files"]) == sorted(p.relative_to(folder).as_posix() for p in files)
        for p in files:
            assert rec["files"][p.relative_to(folder).as_posix()] == sha(p)
    assert "value_head.safetensors" in data["inputs"]["checkpoints"]["ar"]["files"]
    assert data["inputs"]["table"]["sha256"] == sha(table)
    assert verify(out) == []
    (Path(ckpts.ar) / "value_head.safetensors").write_bytes(
        (Path(ckpts.ar) / "value_head.safetensors").read_bytes()
    )
    rows = out / "rows.parquet"
    rows.write_bytes(rows.read_bytes() + b"x")
    assert verify(out) == [f"output rows: {rows} has changed (sha256 differs from eval.json)"]


def test_cli_usage_errors(tmp_path, ckpts, vectors):
    from click.testing import CliRunner

    from hubkit.cli.eval import eval_command

    table = write_table(tmp_path / "eval.parquet", vectors)
    res = CliRunner().invoke(
        eval_command, ["--av", str(ckpts.av), "--table", str(table), "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "give both --av and --ar" in res.output


def test_pair_whose_metas_disagree_is_refused(ckpts):
    with pytest.raises(IncompatiblePairError, match="layer: AV 1 vs AR 0"):
        NLAPair.from_pretrained(av=ckpts.av, ar=ckpts.bad_ar)


def test_trajectory_evaluates_every_checkpoint_and_the_loss_trend(tmp_path, ckpts, vectors):
    table = write_table(tmp_path / "eval.parquet", vectors)
    out = tmp_path / "traj"
    rep = evaluate_trajectory(ckpts.run, table, ar=ckpts.ar, out_dir=out, **FAST)
    data = read_eval_json(out)
    assert data["kind"] == "trajectory"
    traj = data["figures"]["trajectory"]
    assert [p["step"] for p in traj["checkpoints"]] == [10, 20, 30]
    t = traj["trend"]
    slope, intercept = np.polyfit([10, 20, 30], [3.0, 2.0, 1.2], 1)
    assert t["verdict"] == "descending" and t["slope"] == pytest.approx(slope)
    assert traj["loss_curve"]["source"].startswith("checkpoint metas")
    typed = read_eval(out).figures.trajectory  # read back as the sections that wrote it
    assert typed.trend.verdict == "descending" and [p.step for p in typed.checkpoints] == [10, 20, 30]
    for p in traj["checkpoints"]:
        sub = out / p["eval_json"]["path"]
        assert sha(sub) == p["eval_json"]["sha256"]
        child = read_eval_json(sub)
        assert child["figures"]["round_trip"]["all"]["cos"]["mean"] == pytest.approx(p["cos"]["mean"])
        assert child["inputs"]["checkpoints"]["av"]["files"] == p["av"]["files"]
        assert verify(sub) == []
    assert (
        sha(out / data["outputs"]["plots"]["trajectory"]["path"])
        == data["outputs"]["plots"]["trajectory"]["sha256"]
    )
    assert data["inputs"]["checkpoints"]["fixed_ar"]["path"] == str(ckpts.ar)
    assert rep.verdicts.trend == "descending"


def test_trajectory_loss_log_and_plan_errors(tmp_path, ckpts):
    from hubkit.eval.trajectory import _plan, loss_curve

    plan = _plan(ckpts.run, None, ckpts.ar)
    log = tmp_path / "loss.jsonl"
    log.write_text("\n".join(json.dumps({"step": s, "loss": 2.0 + 0.01 * (s % 2)}) for s in range(50)) + "\n")
    lc = loss_curve(ckpts.run, [p[0] for p in plan], log)
    assert len(lc.steps) == 50 and lc.n_points == 50 and lc.sha256 == sha(log)
    from hubkit.eval.trend import trend

    assert trend(lc.steps, lc.losses).verdict == "flat"
    with pytest.raises(DataError, match="checkpoints are AVs; give the AR"):
        _plan(ckpts.run, None, None)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DataError, match="no checkpoint subfolders"):
        _plan(empty, None, ckpts.ar)
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(DataError, match="no records with both"):
        loss_curve(ckpts.run, [], tmp_path / "bad.jsonl")


def test_grpo_step_folders_pair_with_their_own_ar(tmp_path, tiny, metas):
    from hubkit.eval.trajectory import _plan

    av_meta, ar_meta = metas
    for step in (5, 10):
        folder = tmp_path / "grpo" / f"step_{step:06d}"
        write_checkpoint(
            folder, tiny.model, tiny.tokenizer, av_meta.with_updates(training=Training(step=step))
        )
        write_checkpoint(folder / "ar", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D))
    plan = _plan(tmp_path / "grpo", None, None)
    assert [(c.step, a.name, r.parent.name) for c, a, r in plan] == [
        (5, "step_000005", "step_000005"),
        (10, "step_000010", "step_000010"),
    ]


def test_reconstruct_unique_passes_the_batch_size(tiny_pair):
    texts = [f"t{i % 3}" for i in range(7)]
    got = reconstruct_unique(tiny_pair.ar, texts, batch_size=2)
    want = tiny_pair.ar.reconstruct(texts, batch_size=7).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_outside_a_git_repository_nothing_reaches_stderr(tmp_path, metas, vectors, monkeypatch, capfd):
    """evaluate.save asks git for a commit; outside a repository git's complaint stays off the terminal."""
    monkeypatch.chdir(tmp_path)
    table = write_table(tmp_path / "eval.parquet", vectors)
    pair = double_pair(metas, vectors, ConstantAR(np.ones(D)))
    evaluate_pair(pair, table, out_dir=tmp_path / "out", plots=False, **FAST)
    assert "fatal" not in capfd.readouterr().err
    assert json.loads((tmp_path / "out" / "evaluate_results.json").read_text())["_git_commit_hash"] is None
