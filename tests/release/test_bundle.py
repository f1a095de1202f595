"""Bundles: the files each repo gets, provenance hashes, cards parsed back, trajectories, datasets."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard
from safetensors.torch import load_file

from hubkit import constants as C
from hubkit.meta import NLAMeta
from hubkit.release.bundle import Bundle, build_bundle
from hubkit.release.errors import ReleaseError
from hubkit.release.provenance import MANIFEST_FILE

from .conftest import CARD, trajectory_spec, write_spec


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _eval(project) -> dict:
    return json.loads((project["eval_pair"] / "eval.json").read_text())


@pytest.fixture
def pair_bundle(project) -> Bundle:
    return build_bundle(write_spec(project), project["root"] / "out")


def test_pair_bundle_holds_exactly_the_release_files(project, pair_bundle):
    assert [(t.role, t.repo_id, t.folder) for t in pair_bundle.targets] == [
        ("av", "hubkit-org/tiny-nla-av", "av"),
        ("ar", "hubkit-org/tiny-nla-ar", "ar"),
    ]
    av, ar = (set(_tree(pair_bundle.root / r)) for r in ("av", "ar"))
    common = {
        "README.md",
        "provenance.json",
        "eval.json",
        "nla_meta.yaml",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "plots/ablations.png",
        "plots/identification.png",
        "plots/per_row_cosine.png",
    }
    assert av == common
    assert ar == common | {"value_head.safetensors"}
    # no pickles unless asked; the eval.json shipped is the one that was measured, its local paths
    # replaced by public names (numbers and file hashes unchanged; provenance records the original's sha256)
    shipped = json.loads((pair_bundle.root / "av" / "eval.json").read_text())
    measured = _eval(project)
    assert shipped["figures"] == measured["figures"]
    assert shipped["inputs"]["checkpoints"]["av"]["files"] == measured["inputs"]["checkpoints"]["av"]["files"]
    assert shipped["inputs"]["checkpoints"]["av"]["path"] == "av"  # measured elsewhere: its folder's name
    prov = json.loads((pair_bundle.root / "av" / C.PROVENANCE_FILE).read_text())
    assert prov["sources"]["eval.json"]["sha256_before"] == _sha(project["eval_pair"] / "eval.json")
    assert Bundle.load(pair_bundle.root).targets == pair_bundle.targets
    assert (pair_bundle.root / MANIFEST_FILE).is_file()


def test_provenance_hashes_equal_the_files(project, pair_bundle):
    for target in pair_bundle.targets:
        folder = pair_bundle.root / target.folder
        prov = json.loads((folder / C.PROVENANCE_FILE).read_text())
        files = {p: rec["sha256"] for p, rec in prov["files"].items()}
        actual = _tree(folder)
        actual.pop(C.PROVENANCE_FILE)
        assert files == actual
        assert all(prov["files"][p]["size"] == (folder / p).stat().st_size for p in files)
        assert prov["eval"]["sha256"] == _sha(project["eval_pair"] / "eval.json")
        assert prov["eval"]["table"]["sha256"] == _eval(project)["inputs"]["table"]["sha256"]
        assert prov["training_data"][0]["sha256"] == _sha(project["root"] / "av_sft.parquet")
        assert prov["training_data"][0]["rows"] == 3
        assert set(prov["code"]["hubkit_git"]) == {"commit", "dirty"}
        assert (
            prov["code"]["libraries"]["torch"] == torch.__version__.split("+")[0]
            or prov["code"]["libraries"]["torch"]
        )
        assert {"repo": "hubkit-test/tiny-llama", "revision": None, "relation": "base_model"} in prov[
            "parents"
        ]
        other = "hubkit-org/tiny-nla-ar" if target.role == "av" else "hubkit-org/tiny-nla-av"
        assert any(p["repo"] == other and p["revision"] == "v0.1" for p in prov["parents"])
        for rel, rec in prov["sources"].items():
            if rec["how"] == "copy":
                assert not rec["from"].startswith("/")  # relative to the project root: no machine paths
                assert rec["sha256"] == _sha(project["root"] / rec["from"]) == prov["files"][rel]["sha256"]


def test_bundle_is_deterministic(project, pair_bundle):
    first = {t.folder: _tree(pair_bundle.root / t.folder) for t in pair_bundle.targets}
    again = build_bundle(write_spec(project), project["root"] / "out")  # rebuilt in place
    assert {t.folder: _tree(again.root / t.folder) for t in again.targets} == first


def test_card_parses_back_with_eval_figures(project, pair_bundle):
    from transformers import AutoModelForCausalLM

    ev = _eval(project)
    fig = ev["figures"]
    emb = AutoModelForCausalLM.from_pretrained(str(project["base"])).get_input_embeddings().weight.detach()
    ratio = 1.0 / float(emb.norm(dim=-1).median())  # injection scale 1.0 over the median embedding norm
    for role, other in (("av", "ar"), ("ar", "av")):
        card = ModelCard.load(pair_bundle.root / role / "README.md")
        data = card.data
        assert data.base_model == CARD["base_model"]
        assert data.library_name == "hubkit" and data.license == "apache-2.0"
        assert {"nla", "interpretability", "activation-decoding"} <= set(data.tags)
        assert data.model_name == f"hubkit-org/tiny-nla-{role}"
        got = {r.metric_type: r.metric_value for r in data.eval_results}
        assert got["cosine"] == pytest.approx(fig["round_trip"]["all"]["cos"]["mean"])
        assert got["fve"] == pytest.approx(fig["round_trip"]["all"]["fve"]["value"])
        assert got["nmse"] == pytest.approx(fig["round_trip"]["all"]["nmse"]["mean"])
        assert got["noise_floor_p95"] == pytest.approx(fig["noise_floor"]["p95"])
        assert got["frac_above_noise_floor"] == pytest.approx(fig["noise_floor"]["frac_above"])
        top = {t["k"]: t["accuracy"] for t in fig["identification"]["top"]}
        assert got["identification_top1"] == pytest.approx(top[1]) and got[
            "identification_top5"
        ] == pytest.approx(top[5])
        assert all(r.dataset_revision == ev["inputs"]["table"]["sha256"] for r in data.eval_results)
        body = card.text
        cos = fig["round_trip"]["all"]["cos"]
        assert f"**{cos['mean']:.3f}** [{cos['ci_low']:.3f}, {cos['ci_high']:.3f}]" in body
        assert f"Failures: {fig['round_trip']['n_excluded']} of {cos['n']} rows" in body
        assert f"95th percentile **{fig['noise_floor']['p95']:.3f}**" in body
        for c in fig["content_sensitivity"]["av"]["controls"]:
            assert (
                f"{c['delta']['mean']:.3f} [{c['delta']['ci_low']:.3f}, {c['delta']['ci_high']:.3f}]" in body
            )
        t1 = fig["identification"]["top"][0]
        assert (
            f"| top-1 | {t1['accuracy']:.1%} | {t1['chance']:.1%} | {t1['hits']} / {fig['identification']['n']} |"
            in body
        )
        assert f"| distinct explanations | {fig['diversity']['distinct']} of {fig['diversity']['n']}" in body
        # injection scale against the base's embedding norm, computed independently
        assert f"**{ratio:.4g}×**" in body
        # the pair links itself, shows how to load it, and carries the author's words
        assert f"[hubkit-org/tiny-nla-{other}](https://huggingface.co/hubkit-org/tiny-nla-{other})" in body
        assert (
            'NLAPair.from_pretrained(av="hubkit-org/tiny-nla-av", ar="hubkit-org/tiny-nla-ar", revision="v0.1")'
            in body
        )
        for key in ("intended_use", "limitations", "citation"):
            assert CARD[key] in body
        assert "![per row cosine](plots/per_row_cosine.png)" in body
        adapter = _sha(pair_bundle.root / role / "adapter_model.safetensors")
        assert f"| `adapter_model.safetensors` | `{adapter}` |" in body
        assert "RETRACTED" not in body


def test_legacy_pt_only_when_asked_and_weights_only(project):
    build_bundle(write_spec(project), project["root"] / "out", legacy_pt=True)
    ar = project["root"] / "out" / "ar"
    state = torch.load(ar / C.LINEAR_HEAD_PT_FILE, weights_only=True)
    head = load_file(str(ar / C.VALUE_HEAD_FILE))
    assert set(state) == {"weight", "bias"}
    torch.testing.assert_close(state["weight"], head["weight"])
    assert torch.count_nonzero(state["bias"]) == 0  # the same function as the bias-free head
    assert not (project["root"] / "out" / "av" / C.LINEAR_HEAD_PT_FILE).exists()


def test_legacy_head_is_converted_to_safetensors(project):
    """An AR that only has linear_head.pt ships value_head.safetensors (with its bias) and no pickle."""
    from hubkit.eval.report import checkpoint_record

    ar = project["ar"]
    w = torch.randn(32, 32)
    b = torch.randn(32)
    torch.save({"weight": w, "bias": b}, ar / C.LINEAR_HEAD_PT_FILE)
    (ar / C.VALUE_HEAD_FILE).unlink()
    meta = NLAMeta.load(ar)
    meta.ar.head_format, meta.ar.head_bias = "linear_head_pt", True
    meta.save(ar)
    ev_path = project["eval_pair"] / "eval.json"
    ev = json.loads(ev_path.read_text())
    ev["inputs"]["checkpoints"]["ar"] = checkpoint_record(ar)  # as `hubkit eval` would record this AR
    ev_path.write_text(json.dumps(ev))
    build_bundle(write_spec(project), project["root"] / "out")
    out = project["root"] / "out" / "ar"
    assert not (out / C.LINEAR_HEAD_PT_FILE).exists()
    head = load_file(str(out / C.VALUE_HEAD_FILE))
    torch.testing.assert_close(head["weight"], w)
    torch.testing.assert_close(head["bias"], b)
    shipped = NLAMeta.load(out)
    assert (shipped.ar.head_format, shipped.ar.head_bias) == ("value_head", True)


def test_a_stray_pickle_is_refused(project):
    torch.save({"x": torch.zeros(1)}, project["av"] / "extra.bin")
    with pytest.raises(ReleaseError, match=r"extra\.bin: a pickle file"):
        build_bundle(write_spec(project), project["root"] / "out")


def test_user_templates_override_the_default(project, tmp_path):
    cards = tmp_path / "my-cards"
    cards.mkdir()
    (cards / "model.md.j2").write_text(
        "# {{ repo_id }}\ncosine {{ ev.figures.round_trip.all.cos.mean | f3 }}\n"
    )
    build_bundle(write_spec(project), project["root"] / "out", cards_dir=cards)
    body = ModelCard.load(project["root"] / "out" / "av" / "README.md").text
    mean = _eval(project)["figures"]["round_trip"]["all"]["cos"]["mean"]
    assert body.strip() == f"# hubkit-org/tiny-nla-av\ncosine {mean:.3f}"
    (cards / "model.md.j2").write_text("{{ ev.figures.not_a_figure }}\n")
    with pytest.raises(ReleaseError, match=r"model\.md\.j2.*not_a_figure"):
        build_bundle(write_spec(project), project["root"] / "out", cards_dir=cards)


def test_out_folder_that_is_not_a_bundle_is_left_alone(project):
    out = project["root"] / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not a release bundle"):
        build_bundle(write_spec(project), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_stray_manifest_does_not_make_a_folder_a_bundle(project):
    out = project["root"] / "mine"
    out.mkdir()
    (out / "release.json").write_text("{}")
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not a release bundle"):
        build_bundle(write_spec(project), out)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "release.json").read_text() == "{}"


def test_a_bundle_is_rebuilt_only_while_it_holds_nothing_but_what_hubkit_wrote(project):
    spec = write_spec(project)
    out = project["root"] / "out"
    build_bundle(spec, out)
    build_bundle(spec, out)  # an unchanged bundle is replaced
    (out / "av" / "my-notes.md").write_text("mine")
    with pytest.raises(ReleaseError, match=r"av/my-notes.md is not written by hubkit; nothing was replaced"):
        build_bundle(spec, out)
    (out / "av" / "my-notes.md").unlink()
    readme = out / "ar" / "README.md"
    readme.write_text(readme.read_text() + "\nmy edit\n")
    with pytest.raises(ReleaseError, match=r"ar/README.md is changed since hubkit wrote it"):
        build_bundle(spec, out)
    assert readme.read_text().endswith("my edit\n")


def test_trajectory_bundle_with_a_retraction(project):
    reason = "trained on a corrupted shard; numbers kept for the record"
    spec = trajectory_spec(project, corrections=[{"checkpoint": "step_000002", "reason": reason}])
    bundle = build_bundle(spec, project["root"] / "out")
    folder = bundle.root / "trajectory"
    ev = json.loads((project["eval_traj"] / "eval.json").read_text())
    names = [p["name"] for p in ev["figures"]["trajectory"]["checkpoints"]]
    assert names == ["step_000001", "step_000002", "step_000003"]
    files = _tree(folder)
    for name in names:
        assert {f"{name}/adapter_model.safetensors", f"{name}/nla_meta.yaml", f"{name}/eval.json"} <= set(
            files
        )
        assert not any(p.startswith(f"{name}/trainer_state") for p in files)  # resume state stays home
        src = project["run"] / name / "adapter_model.safetensors"
        assert files[f"{name}/adapter_model.safetensors"] == _sha(src)
    assert NLAMeta.load(folder / "step_000002").retracted.reason == reason
    assert NLAMeta.load(folder / "step_000003").retracted is None
    card = ModelCard.load(folder / "README.md")
    body = card.text
    assert f"`step_000002`: {reason}" in body
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(step_\d+)` \| \d+ \| ([^|]+) \|", body, re.M)}
    assert rows == {"step_000001": "ok", "step_000002": "**RETRACTED**", "step_000003": "ok"}
    for p in ev["figures"]["trajectory"]["checkpoints"]:
        assert (
            f"| `{p['name']}` | {p['step']} |" in body
            and f"{p['cos']['mean']:.3f} [{p['cos']['ci_low']:.3f}" in body
        )
    lc = ev["figures"]["trajectory"]["loss_curve"]
    for step, loss in zip(lc["steps"], lc["losses"], strict=True):
        assert f"| {int(step)} | {loss:.4f} |" in body
    configs = {r.metric_config for r in card.data.eval_results}
    assert configs == {"step_000001", "step_000003"}  # retracted checkpoints are not in the model-index
    assert 'av_subfolder="step_000003"' in body
    prov = json.loads((folder / C.PROVENANCE_FILE).read_text())
    assert {p: r["sha256"] for p, r in prov["files"].items()} == {
        p: s for p, s in files.items() if p != C.PROVENANCE_FILE
    }


def test_correction_of_an_unknown_checkpoint_names_the_field(project):
    spec = trajectory_spec(project, corrections=[{"checkpoint": "step_000009", "reason": "x"}])
    with pytest.raises(ReleaseError, match=r"corrections\[0\]\.checkpoint.*step_000009"):
        build_bundle(spec, project["root"] / "out")


def test_dataset_bundle_and_card(project):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hubkit.data.sidecar import CorpusInfo, DatasetSidecar, ExtractionInfo, LabelInfo, write_sidecar

    table = project["root"] / "av_sft_labeled.parquet"
    pq.write_table(
        pa.table(
            {"doc_id": ["a", "b", "c", "d"], "position": [1, 2, 3, 4], "explanation": ["w", "x", "y", "z"]}
        ),
        str(table),
    )
    side = DatasetSidecar(
        table="labeled",
        rows=4,
        extraction=ExtractionInfo(base_model="tiny", layer=1, d_model=32),
        corpus=CorpusInfo(name="bundled", n_docs=4),
        columns=["doc_id", "position", "explanation"],
        labeling=LabelInfo(
            labeler="rule-labeler",
            auditor="rule-auditor",
            prompt_sha256="p" * 64,
            status_counts={"ok": 3, "rejected": 1},
        ),
    )
    write_sidecar(table, side)
    spec = write_spec(
        project,
        "data",
        kind="dataset",
        repos={"dataset": "hubkit-org/tiny-nla-data"},
        checkpoints=None,
        eval=None,
        training_data=None,
        data_files=["av_sft_labeled.parquet"],
    )
    bundle = build_bundle(spec, project["root"] / "out")
    assert [(t.repo_type, t.repo_id) for t in bundle.targets] == [("dataset", "hubkit-org/tiny-nla-data")]
    folder = bundle.root / "dataset"
    assert set(_tree(folder)) == {
        "README.md",
        "provenance.json",
        "data/av_sft_labeled.parquet",
        "data/av_sft_labeled.parquet.json",
    }
    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0" and card.data.size_categories == ["n<1K"]
    assert card.data.configs[0]["data_files"] == [
        {"split": "av_sft_labeled", "path": "data/av_sft_labeled.parquet"}
    ]
    body = card.text
    assert "| labeled | 4 | doc_id, position, explanation |" in body
    assert "labeled by `rule-labeler`, audited by `rule-auditor`" in body and "ok 3, rejected 1" in body
    # a sidecar whose row count disagrees with its table is refused
    side_path = Path(str(table) + ".json")
    data = json.loads(side_path.read_text())
    data["rows"] = 5
    side_path.write_text(json.dumps(data))
    with pytest.raises(ReleaseError, match=r"records 5 rows but .* has 4"):
        build_bundle(spec, project["root"] / "out")


def test_single_half_release_links_its_partner(project):
    spec = write_spec(project, "av-only", kind="av", checkpoints={"av": "ckpt/av"}, partner_revision="v0.3")
    bundle = build_bundle(spec, project["root"] / "out")
    assert [t.role for t in bundle.targets] == ["av"] and not (bundle.root / "ar").exists()
    body = ModelCard.load(bundle.root / "av" / "README.md").text
    assert (
        'av="hubkit-org/tiny-nla-av", ar="hubkit-org/tiny-nla-ar", av_revision="v0.1", ar_revision="v0.3"'
        in body
    )
    prov = json.loads((bundle.root / "av" / C.PROVENANCE_FILE).read_text())
    assert {"repo": "hubkit-org/tiny-nla-ar", "revision": "v0.3", "relation": "pair (ar)"} in prov["parents"]
    # an AR alone: the card still states the AV's injection scale that the eval ran with, against the base
    spec = write_spec(
        project, "ar-only", kind="ar", checkpoints={"ar": "ckpt/ar"}, repos={"ar": "hubkit-org/x-ar"}
    )
    bundle = build_bundle(spec, project["root"] / "out")
    body = ModelCard.load(bundle.root / "ar" / "README.md").text
    assert "| injection scale | median token-embedding norm | ratio |" in body
    assert 'ar="hubkit-org/x-ar", av="<the AV trained with it>"' in body
