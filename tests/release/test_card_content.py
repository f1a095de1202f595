"""Card content: every number parsed back equals eval.json; training data credited; optional eval sections."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import ModelCard

from hubkit.data.sidecar import CorpusInfo, DatasetSidecar, ExtractionInfo, LabelInfo, write_sidecar
from hubkit.eval.metrics import FVEChange, summarize, to_plain
from hubkit.eval.paraphrase import Flips, ParaphraseSensitivity
from hubkit.release.bundle import build_bundle
from hubkit.release.errors import ReleaseError

from .conftest import D_MODEL, LAYER, family_project
from .test_families import _spec

NUM = r"(-?\d+\.\d+)"


def _table(proj: dict, name: str, corpus: str) -> str:
    path = proj["root"] / name
    pq.write_table(pa.table({"doc_id": ["a", "b"], "explanation": ["x", "y"]}), str(path))
    side = DatasetSidecar(
        table="av_sft",
        rows=2,
        extraction=ExtractionInfo(base_model="tiny", layer=LAYER, d_model=D_MODEL),
        corpus=CorpusInfo(name=corpus, n_docs=2),
        labeling=LabelInfo(
            labeler="labeler-model", auditor="auditor-model", prompt_sha256="p" * 64, status_counts={"ok": 2}
        ),
    )
    write_sidecar(path, side)
    return name


@pytest.fixture
def smol(tmp_path, family_worlds) -> dict:
    return family_project(tmp_path, family_worlds("smollm"))


def _build(proj: dict, **fields) -> str:
    spec = _spec(proj, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-tiny", **fields)
    bundle = build_bundle(spec, proj["root"] / "out")
    return ModelCard.load(bundle.root / "av" / "README.md").text


def _one(pattern: str, body: str) -> tuple[float, ...]:
    found = re.findall(pattern, body, re.M)
    assert len(found) == 1, (pattern, found)
    row = found[0] if isinstance(found[0], tuple) else (found[0],)
    return tuple(float(x) for x in row)


def test_card_numbers_equal_eval_json(smol):
    body = _build(smol, train_eval="eval_train/eval.json")
    ev = json.loads((smol["eval"] / "eval.json").read_text())
    tev = json.loads((smol["eval_train"] / "eval.json").read_text())
    rt, fl, ident = (
        ev["figures"]["round_trip"]["all"],
        ev["figures"]["noise_floor"],
        ev["figures"]["identification"],
    )

    def close(parsed: tuple[float, ...], want: tuple[float, ...], places: int = 3) -> None:
        assert parsed == pytest.approx(want, abs=0.5 * 10**-places + 1e-12)

    cos = rt["cos"]
    close(
        _one(rf"^\| round-trip cosine, mean \[95% CI\] \| \*\*{NUM}\*\* \[{NUM}, {NUM}\] \|$", body),
        (cos["mean"], cos["ci_low"], cos["ci_high"]),
    )
    close(
        _one(rf"^\| std / median / min / max \| {NUM} / {NUM} / {NUM} / {NUM} \|$", body),
        (cos["std"], cos["median"], cos["min"], cos["max"]),
    )
    fve = rt["fve"]
    close(
        _one(rf"^\| FVE \[95% CI\] \(baseline B = {NUM}\) \| {NUM} \[{NUM}, {NUM}\] \|$", body),
        (fve["baseline_b"], fve["value"], fve["ci_low"], fve["ci_high"]),
    )
    close(_one(rf"^\| normalised MSE, mean \| {NUM} \|$", body), (rt["nmse"]["mean"],))
    assert _one(r"^\| rows evaluated \(n\) \| (\d+) of (\d+) \|$", body) == (
        rt["n"],
        ev["inputs"]["table"]["rows_total"],
    )
    close(
        _one(rf"^\| rows above the noise floor \({NUM}\) \| {NUM}% \|$", body),
        (fl["p95"], 100 * fl["frac_above"]),
        1,
    )
    for t in ident["top"]:
        row = _one(rf"^\| top-{t['k']} \| {NUM}% \| {NUM}% \| (\d+) / (\d+) \|", body)
        close(row[:2], (100 * t["accuracy"], 100 * t["chance"]), 1)
        assert row[2:] == (t["hits"], ident["n"])
    # the training-distribution FVE, labelled as such, beside the held-out one
    close(
        _one(rf"^\| held-out eval table \(above\) \| {NUM} \[{NUM}, {NUM}\] \| \d+ \|$", body),
        (fve["value"], fve["ci_low"], fve["ci_high"]),
    )
    tf = tev["figures"]["round_trip"]["all"]["fve"]
    row = _one(
        rf"^\| training distribution \(table `[0-9a-f]{{12}}`\) \| {NUM} \[{NUM}, {NUM}\] \| (\d+) \|$", body
    )
    close(row[:3], (tf["value"], tf["ci_low"], tf["ci_high"]))
    assert row[3] == tev["figures"]["round_trip"]["all"]["n"]
    # the items of the reference card
    assert "not general-purpose language models" in body
    assert "https://transformer-circuits.pub/2026/nla/index.html" in body and "@article{nla2026" in body
    assert "reading the residual stream at layer **1** (the extraction" in body
    assert "[hubkit-org/smollm2-tiny-nla-ar](https://huggingface.co/hubkit-org/smollm2-tiny-nla-ar)" in body


def test_without_a_training_eval_the_card_says_so(smol):
    body = _build(smol)
    assert "| training distribution | not measured for this release | — |" in body


def test_a_training_eval_on_the_held_out_table_is_refused(smol):
    with pytest.raises(ReleaseError, match=r"measured the same table as the held-out eval"):
        _build(smol, train_eval="eval/eval.json")


def test_training_data_is_credited_from_sidecars_and_the_spec(smol):
    a = _table(smol, "av_sft.parquet", "bundled[:40]")  # hubkit's own corpus: its licence is known
    b = _table(smol, "ar_sft.parquet", "my-web-crawl")
    corpora = {"my-web-crawl": {"license": "odc-by", "url": "https://example.org/my-web-crawl"}}
    body = _build(smol, training_data=[a, b], corpora=corpora)
    rows = {
        m[0]: m[1:] for m in re.findall(r"^\| `([^`]+)` \| 2 \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", body, re.M)
    }
    assert rows["av_sft.parquet"] == ("hubkit bundled corpus", "CC0-1.0", "—")
    assert rows["ar_sft.parquet"] == (
        "my-web-crawl",
        "odc-by",
        "[https://example.org/my-web-crawl](https://example.org/my-web-crawl)",
    )
    assert "Explanations written by auditor-model, labeler-model." in body
    prov = json.loads((smol["root"] / "out" / "av" / "provenance.json").read_text())
    assert [d["license"] for d in prov["training_data"]] == ["CC0-1.0", "odc-by"]


def test_a_corpus_without_a_licence_is_refused_naming_the_field(smol):
    b = _table(smol, "ar_sft.parquet", "my-web-crawl")
    with pytest.raises(ReleaseError) as exc:
        _build(smol, training_data=[b])
    assert "\n" not in str(exc.value) and "field `corpora.my-web-crawl.license` is needed" in str(exc.value)


def test_optional_eval_sections_render_through_the_partial(smol, tmp_path):
    ev_path = smol["eval"] / "eval.json"
    ev = json.loads(ev_path.read_text())
    ev["figures"]["paraphrase"] = {"delta_cos": {"mean": -0.031}}
    ev_path.write_text(json.dumps(ev))
    # a half-written section is refused
    with pytest.raises(ReleaseError, match="figures.paraphrase.delta_cos"):
        _build(smol)
    cos = summarize([0.5, 0.6, 0.7], n_boot=10)
    ev["figures"]["paraphrase"] = to_plain(
        ParaphraseSensitivity(
            labeler="x", n=3, n_used=3, statuses={"ok": 3}, cos_original=cos, cos_paraphrase=cos,
            delta=summarize([-0.031] * 3, n_boot=10), relative_change=-0.05,
            fve=FVEChange(3, 0.1, 0.09, -0.01, None, None, 1.0), flips=[Flips(1, 2, 2, 0, 0, 0.0)], verdict="undetermined",
        )
    )  # fmt: skip
    ev_path.write_text(json.dumps(ev))
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "eval_extras.md.j2").write_text(
        "### Paraphrase\n\nchange in cosine {{ ev.figures.paraphrase.delta.mean | f3 }}\n"
    )
    spec = _spec(smol, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-tiny")
    bundle = build_bundle(spec, smol["root"] / "out", cards_dir=cards)
    body = ModelCard.load(bundle.root / "av" / "README.md").text
    assert "### Paraphrase\n\nchange in cosine -0.031" in body
    del ev["figures"]["paraphrase"]
    ev_path.write_text(json.dumps(ev))
    body = ModelCard.load(
        build_bundle(spec, smol["root"] / "out", cards_dir=cards).root / "av" / "README.md"
    ).text
    assert "### Paraphrase" not in body  # a report without the sections does not include the partial


def test_the_code_link_comes_from_the_spec(smol):
    from .conftest import CARD

    body = _build(
        smol,
        card={
            **CARD,
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "code_url": "https://example.org/hubkit",
        },
    )
    assert "Training and inference code: [hubkit](https://example.org/hubkit)" in body
