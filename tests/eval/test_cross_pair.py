"""Cross-pair matrix: each cell equals the separate pair eval; incompatible halves refused before any work."""

import json
from dataclasses import asdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hubkit import heads
from hubkit.checkpoint import write_checkpoint
from hubkit.errors import IncompatiblePairError, MetaError
from hubkit.eval.cross_pair import cross_pair_matrix
from hubkit.eval.cross_pair_eval import evaluate_cross_pair
from hubkit.eval.extras import Extras
from hubkit.eval.generation import Generation
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import read_eval, read_eval_json, verify
from hubkit.eval.table import EvalTable
from hubkit.meta import Injection
from hubkit.pair import NLAPair
from hubkit.reconstructor import ActivationReconstructor
from hubkit.verbalizer import ActivationVerbalizer

from .conftest import D, write_table

FAST = dict(generation=Generation(max_new_tokens=6), n_boot=200)


@pytest.fixture(scope="module")
def halves(tiny, metas):
    av_meta, ar_meta = metas
    avs = {
        "av_sqrt_d": ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta),
        "av_scale_3": ActivationVerbalizer(
            tiny.model,
            tiny.tokenizer,
            av_meta.with_updates(
                injection=Injection("embedding_replace", 3.0, marker=av_meta.injection.marker)
            ),
        ),
    }
    g = torch.Generator().manual_seed(3)
    noisy = heads.identity_head(D)
    with torch.no_grad():
        noisy.weight.add_(0.5 * torch.randn(D, D, generator=g))
    ars = {
        "ar_identity": ActivationReconstructor(tiny.model, tiny.tokenizer, ar_meta, heads.identity_head(D)),
        "ar_noisy": ActivationReconstructor(tiny.model, tiny.tokenizer, ar_meta, noisy),
    }
    return avs, ars


class CountingAV:
    """Wraps an AV and counts generation calls (to prove nothing ran before a refusal)."""

    def __init__(self, av):
        self.av, self.meta, self.calls = av, av.meta, 0

    def explain_detailed(self, *a, **k):
        self.calls += 1
        return self.av.explain_detailed(*a, **k)


def _table(vectors):
    n = len(vectors)
    return EvalTable(
        path=None,
        sha256=None,
        doc_ids=[f"d{i}" for i in range(n)],
        positions=np.arange(n),
        prefixes=[""] * n,
        vectors=torch.tensor(vectors, dtype=torch.float32),
    )


def test_every_cell_equals_the_separate_pair_eval(halves, vectors):
    avs, ars = halves
    table = _table(vectors)
    cp = cross_pair_matrix(avs, ars, table, generation=Generation(max_new_tokens=6, seed=2), n_boot=200)
    assert cp.avs == list(avs) and cp.ars == list(ars) and len(cp.cells) == 4
    for a, av in avs.items():
        for r, ar in ars.items():
            rep = evaluate_pair(
                NLAPair(av, ar),
                table,
                generation=Generation(max_new_tokens=6, seed=2),
                n_boot=200,
                plots=False,
            )
            fig, cell = rep.figures, cp.cell(a, r)
            assert asdict(cell.cos) == asdict(fig.round_trip.all.cos)
            assert asdict(cell.fve) == asdict(fig.round_trip.all.fve)
            assert cell.noise_floor_p95 == fig.noise_floor.p95
            assert cell.frac_above_floor == fig.noise_floor.frac_above
            assert [asdict(t) for t in cell.identification] == [asdict(t) for t in fig.identification.top]
            assert cell.n_excluded == fig.round_trip.n_excluded
    # the two ARs really differ, so the matrix is not one number repeated
    m = cp.matrix(lambda c: c.cos.mean)
    assert m.shape == (2, 2) and abs(m[0, 0] - m[0, 1]) > 1e-3


def test_incompatible_halves_are_refused_before_any_work(tiny, metas, halves, vectors):
    avs, ars = halves
    counting = CountingAV(avs["av_sqrt_d"])
    other_layer = ActivationReconstructor(
        tiny.model, tiny.tokenizer, metas[1].with_updates(layer=0), heads.identity_head(D)
    )
    with pytest.raises(
        IncompatiblePairError, match=r"1 of 2 AV × AR cells .*\(counting, layer0\): layer: AV 1 vs AR 0"
    ):
        cross_pair_matrix(
            {"counting": counting}, {"ok": ars["ar_identity"], "layer0": other_layer}, _table(vectors)
        )
    assert counting.calls == 0
    extras = Extras(cross_ars={"layer0": other_layer})
    with pytest.raises(IncompatiblePairError, match="layer: AV 1 vs AR 0"):
        evaluate_pair(NLAPair(counting, ars["ar_identity"]), _table(vectors), extras=extras, **FAST)
    assert counting.calls == 0
    with pytest.raises(MetaError, match="is an AR checkpoint, not an AV"):
        cross_pair_matrix({"wrong": ars["ar_identity"]}, ars, _table(vectors))
    with pytest.raises(IncompatiblePairError, match="at least one AV and one AR"):
        cross_pair_matrix(avs, {}, _table(vectors))


def test_pair_eval_with_every_section(tmp_path, halves, vectors, server_labeler):
    avs, ars = halves
    extras = Extras(
        paraphraser=server_labeler,
        claim_ablation=True,
        cross_avs={"other AV": avs["av_scale_3"]},
        cross_ars={"other AR": ars["ar_noisy"]},
    )
    pair = NLAPair(avs["av_sqrt_d"], ars["ar_identity"])
    table = write_table(tmp_path / "eval.parquet", vectors)
    rep = evaluate_pair(pair, table, out_dir=tmp_path / "out", extras=extras, **FAST)
    data = read_eval_json(tmp_path / "out")
    fig = data["figures"]
    assert {"paraphrase", "claim_ablation", "cross_pair"} <= set(fig)
    cp = fig["cross_pair"]
    assert cp["this_pair"] == {"av": "this AV", "ar": "this AR"} and len(cp["cells"]) == 4
    own = next(c for c in cp["cells"] if c["av"] == "this AV" and c["ar"] == "this AR")
    assert own["cos"] == fig["round_trip"]["all"]["cos"] and own["fve"] == fig["round_trip"]["all"]["fve"]
    assert sum(fig["paraphrase"]["statuses"].values()) == 12 == fig["paraphrase"]["n"]
    rows = pq.read_table(tmp_path / "out" / "rows.parquet")
    assert {"paraphrase", "paraphrase_status", "cos_paraphrase", "claims", "claim_deltas"} <= set(
        rows.column_names
    )
    assert rows.column("paraphrase_status").to_pylist() == rep.figures.paraphrase.row_statuses
    assert "cross_pair" in data["outputs"]["plots"] and verify(tmp_path / "out") == []
    # the same headline figures through `evaluate.save`, with its provenance fields
    res = json.loads((tmp_path / "out" / data["outputs"]["evaluate"]["path"]).read_text())
    assert {"_timestamp", "_git_commit_hash", "_evaluate_version", "_python_version"} <= set(res)
    assert (
        res["cos_mean"] == fig["round_trip"]["all"]["cos"]["mean"]
        and res["fve"] == fig["round_trip"]["all"]["fve"]["value"]
    )
    assert res["paraphrase_cos_delta"] == fig["paraphrase"]["delta"]["mean"]
    assert res["claim_cos_delta"] == fig["claim_ablation"]["delta"]["mean"] and len(res["cross_pair"]) == 4
    # the card partial renders every section from eval.json's numbers
    text = render_extras(data, tmp_path / "cards")
    ps, ca = fig["paraphrase"], fig["claim_ablation"]
    assert f"| change in cosine [95% CI] | {ps['delta']['mean']:.4f} [{ps['delta']['ci_low']:.4f}," in text
    assert f"| every claim | {ca['delta']['n']} | {ca['delta']['mean']:.4f}" in text
    assert f"| **this AV** | {own['cos']['mean']:.3f} / {own['fve']['value']:.3f} /" in text
    assert text.count("### ") == 3
    assert render_extras(data, tmp_path / "cards", include=True).strip() == text.strip()  # included the same


def render_extras(ev: dict, cards_dir, include: bool = False) -> str:
    """The partial rendered the way a release card uses it (strict: a missing figure is an error)."""
    from hubkit.release.cards import render_body

    cards_dir.mkdir(exist_ok=True)
    body = (
        '{% include "eval_extras.md.j2" %}'
        if include
        else '{% import "eval_extras.md.j2" as X %}{{ X.sections(ev) }}'
    )
    (cards_dir / "card.md.j2").write_text(body)
    return render_body("card.md.j2", {"ev": ev}, cards_dir)


def test_extras_partial_is_empty_without_sections_and_strict_with_them(tmp_path):
    from hubkit.release.errors import ReleaseError

    assert render_extras({"figures": {"round_trip": {}}}, tmp_path).strip() == ""
    with pytest.raises(ReleaseError, match="no attribute .n_rows_no_claim"):
        render_extras(
            {"figures": {"claim_ablation": {"n_claims": 3, "n_rows_ablated": 1, "n_rows": 1}}}, tmp_path
        )


def test_cross_pair_eval_of_checkpoint_folders(tmp_path, tiny, metas, vectors):
    av_meta, ar_meta = metas
    av = write_checkpoint(tmp_path / "av", tiny.model, tiny.tokenizer, av_meta)
    ar1 = write_checkpoint(tmp_path / "ar1", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D))
    ar2 = write_checkpoint(tmp_path / "ar2", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D))
    table = write_table(tmp_path / "eval.parquet", vectors)
    rep = evaluate_cross_pair(
        {"av": av},
        {"ar1": ar1, "ar2": ar2},
        table,
        out_dir=tmp_path / "x",
        generation=Generation(max_new_tokens=4),
        n_boot=100,
    )
    data = read_eval_json(tmp_path / "x")
    assert read_eval(tmp_path / "x").figures.cross_pair.cell("av", "ar2").ar == "ar2"
    assert data["kind"] == "cross_pair" and set(data["inputs"]["checkpoints"]) == {
        "av:av",
        "ar:ar1",
        "ar:ar2",
    }
    c1, c2 = data["figures"]["cross_pair"]["cells"]
    assert c1["cos"] == c2["cos"]  # the same weights give the same cell
    assert verify(tmp_path / "x") == [] and rep.figures.cross_pair.n == 12


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny, metas):
    root = tmp_path_factory.mktemp("halves")
    av_meta, ar_meta = metas
    noisy = heads.identity_head(D)
    with torch.no_grad():
        noisy.weight.add_(0.5 * torch.randn(D, D, generator=torch.Generator().manual_seed(1)))
    return {
        "av": write_checkpoint(root / "av", tiny.model, tiny.tokenizer, av_meta),
        "ar1": write_checkpoint(
            root / "ar1", tiny.model, tiny.tokenizer, ar_meta, head=heads.identity_head(D)
        ),
        "ar2": write_checkpoint(root / "ar2", tiny.model, tiny.tokenizer, ar_meta, head=noisy),
        "layer0": write_checkpoint(
            root / "layer0",
            tiny.model,
            tiny.tokenizer,
            ar_meta.with_updates(layer=0),
            head=heads.identity_head(D),
        ),
    }


def _cli(args):
    from click.testing import CliRunner

    from hubkit.cli import main

    return CliRunner().invoke(main, ["eval", *map(str, args), "--max-new-tokens", "4", "--n-boot", "100"])


def test_cli_pair_eval_with_sections(tmp_path, folders, vectors, rewording_server):
    table = write_table(tmp_path / "eval.parquet", vectors)
    out = tmp_path / "out"
    res = _cli(
        ["--av", folders["av"], "--ar", folders["ar1"], "--cross-ar", folders["ar2"], "--claim-ablation"]
        + ["--paraphrase-endpoint", rewording_server.base_url, "--paraphrase-model", "m"]
        + ["--table", table, "--out", out]
    )
    assert res.exit_code == 0, res.output
    assert "paraphrase (openai:m)" in res.output and "claim ablation:" in res.output
    assert "cross-pair matrix on 12 rows" in res.output
    fig = read_eval_json(out)["figures"]
    assert fig["cross_pair"]["ars"] == ["ar1", "ar2"] and fig["cross_pair"]["this_pair"] == {
        "av": "av",
        "ar": "ar1",
    }
    assert fig["paraphrase"]["labeler"] == "openai:m" and fig["claim_ablation"]["n_rows"] == 12


def test_cli_cross_pair_eval_and_refusals(tmp_path, folders, vectors):
    table = write_table(tmp_path / "eval.parquet", vectors)
    res = _cli(
        ["--cross-av", folders["av"], "--cross-ar", folders["ar1"], "--cross-ar", folders["ar2"]]
        + ["--table", table, "--out", tmp_path / "x"]
    )
    assert res.exit_code == 0, res.output
    data = read_eval_json(tmp_path / "x")
    assert data["kind"] == "cross_pair" and len(data["figures"]["cross_pair"]["cells"]) == 2
    bad = _cli(
        ["--av", folders["av"], "--ar", folders["ar1"], "--cross-ar", folders["layer0"]]
        + ["--table", table, "--out", tmp_path / "bad"]
    )
    assert bad.exit_code != 0 and "(av, layer0): layer: AV 1 vs AR 0" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "bad" / "eval.json").exists()
    usage = _cli(
        ["--av", folders["av"], "--ar", folders["ar1"], "--paraphrase-endpoint", "http://127.0.0.1:9/v1"]
        + ["--table", table, "--out", tmp_path / "u"]
    )
    assert usage.exit_code == 2 and "needs --paraphrase-model" in usage.output
