"""Each honesty check refuses the build, names the file at fault, and leaves the previous bundle alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hubkit import constants as C
from hubkit.eval.report import checkpoint_record
from hubkit.meta import NLAMeta
from hubkit.release import honesty
from hubkit.release.bundle import build_bundle
from hubkit.release.errors import HonestyError

from .conftest import write_spec


def _ev(project) -> tuple[Path, dict]:
    path = project["eval_pair"] / "eval.json"
    return path, json.loads(path.read_text())


def _rerecord(project, role: str) -> None:
    """Make eval.json record the current files of a half, as an eval of that checkpoint would."""
    path, ev = _ev(project)
    ev["inputs"]["checkpoints"][role] = checkpoint_record(project[role])
    path.write_text(json.dumps(ev))


def test_weights_changed_after_eval_are_refused(project):
    adapter = project["av"] / C.ADAPTER_WEIGHTS_FILE
    state = load_file(str(adapter))
    key = next(k for k in state if "lora_B" in k)
    state[key] = state[key] + 0.01
    save_file(state, str(adapter))
    with pytest.raises(HonestyError) as info:
        build_bundle(write_spec(project), project["root"] / "out")
    msg = str(info.value)
    assert str(adapter) in msg and str(project["eval_pair"] / "eval.json") in msg
    assert "other weights" in msg
    assert not (project["root"] / "out").exists()


def test_eval_of_another_checkpoint_is_refused(project):
    """Swapping in the AR's eval record for the AV: every hash differs, the first shipped file is named."""
    path, ev = _ev(project)
    ev["inputs"]["checkpoints"]["av"] = ev["inputs"]["checkpoints"]["ar"]
    path.write_text(json.dumps(ev))
    with pytest.raises(HonestyError, match=rf"{project['av'] / C.ADAPTER_WEIGHTS_FILE}: sha256 .* differs"):
        build_bundle(write_spec(project), project["root"] / "out")


def test_a_file_eval_never_measured_is_refused(project):
    save_file({"w": torch.zeros(2)}, str(project["ar"] / "extra.safetensors"))
    with pytest.raises(HonestyError, match=r"extra\.safetensors: not among the files .*eval\.json measured"):
        build_bundle(write_spec(project), project["root"] / "out")


def test_eval_without_hashes_is_refused(project):
    path, ev = _ev(project)
    ev["inputs"]["checkpoints"] = {}
    path.write_text(json.dumps(ev))
    with pytest.raises(HonestyError, match="records no file hashes for the AV checkpoint"):
        build_bundle(write_spec(project), project["root"] / "out")


@pytest.mark.parametrize(
    "where, edit",
    [
        (
            "figures.round_trip.all.cos.ci_low",
            lambda ev: ev["figures"]["round_trip"]["all"]["cos"].update(ci_low=None),
        ),
        ("figures.noise_floor.p95", lambda ev: ev["figures"]["noise_floor"].pop("p95")),
        ("figures.identification.top", lambda ev: ev["figures"]["identification"].update(top=[])),
        (
            "figures.content_sensitivity.av.controls[2].delta.ci_high",
            lambda ev: ev["figures"]["content_sensitivity"]["av"]["controls"][2]["delta"].update(
                ci_high=None
            ),
        ),
        ("figures.diversity", lambda ev: ev["figures"].pop("diversity")),
        (
            "figures.round_trip.all.fve.value",
            lambda ev: ev["figures"]["round_trip"]["all"]["fve"].update(value=None),
        ),
    ],
)
def test_missing_figure_is_refused(project, where, edit):
    path, ev = _ev(project)
    edit(ev)
    path.write_text(json.dumps(ev))
    with pytest.raises(HonestyError) as info:
        build_bundle(write_spec(project), project["root"] / "out")
    assert str(path) in str(info.value) and f"`{where}" in str(info.value)


def test_check_required_walks_every_list_item():
    data = {"a": {"items": [{"x": 1}, {"x": 2}, {"y": 3}]}}
    honesty.check_required(data, ("a.items", "a.items.*"), "e.json")  # present and non-empty: passes
    with pytest.raises(HonestyError, match=r"`a\.items\[2\]\.x` is missing"):
        honesty.check_required(data, ("a.items.*.x",), "e.json")


@pytest.mark.parametrize(
    "change, what",
    [({"layer": 0}, "layer"), ({"d_model": 48}, "d_model"), ({"base_model": "other/model"}, "base_model")],
)
def test_pair_metas_that_disagree_are_refused(project, change, what):
    ar_meta = NLAMeta.load(project["ar"])
    ar_meta.with_updates(**change).save(project["ar"])
    _rerecord(project, "ar")  # even an eval that recorded these exact files cannot make them a pair
    with pytest.raises(HonestyError) as info:
        build_bundle(write_spec(project), project["root"] / "out")
    msg = str(info.value)
    assert str(project["av"] / C.META_FILE) in msg and str(project["ar"] / C.META_FILE) in msg and what in msg


def test_a_half_released_alone_must_match_the_eval_record(project):
    ar_meta = NLAMeta.load(project["ar"])
    ar_meta.with_updates(layer=0).save(project["ar"])
    _rerecord(project, "ar")
    spec = write_spec(project, kind="ar", checkpoints={"ar": "ckpt/ar"})
    with pytest.raises(
        HonestyError, match=rf"{project['ar'] / C.META_FILE} disagrees with what .* measured: layer"
    ):
        build_bundle(spec, project["root"] / "out")


def test_out_of_distribution_injection_scale(project):
    av_meta = NLAMeta.load(project["av"])
    av_meta.injection.scale = 200.0  # ~1800x the tiny model's embedding norm
    av_meta.save(project["av"])
    _rerecord(project, "av")
    with pytest.raises(HonestyError) as info:
        build_bundle(write_spec(project), project["root"] / "out")
    msg = str(info.value)
    assert str(project["av"] / C.META_FILE) in msg and "beyond 50×" in msg and "ood_allowed" in msg
    # recorded as deliberate by the training: released, with a warning in the card
    av_meta.injection.ood_allowed = True
    av_meta.save(project["av"])
    _rerecord(project, "av")
    bundle = build_bundle(write_spec(project), project["root"] / "out")
    body = (bundle.root / "av" / "README.md").read_text()
    assert "[!CAUTION]" in body and "The training recorded it as deliberate" in body


def test_scale_check_measures_the_base_embedding_norm(release_world):
    """The ratio uses the base's median token-embedding norm, computed here independently."""
    from transformers import AutoModelForCausalLM

    meta = NLAMeta.load(release_world["av"])
    info = honesty.injection_scale(meta, "m.yaml", release_world["av"])
    emb = (
        AutoModelForCausalLM.from_pretrained(str(release_world["base"]))
        .get_input_embeddings()
        .weight.detach()
    )
    norm = float(emb.norm(dim=-1).median())
    assert info["embedding_norm"] == pytest.approx(norm, rel=1e-5)
    assert info["ratio"] == pytest.approx(1.0 / norm, rel=1e-5)
    meta.injection.scale = 60 * norm
    with pytest.raises(HonestyError, match="60×"):
        honesty.injection_scale(meta, "m.yaml", release_world["av"])
    meta.injection.scale = norm / 60  # too small is out of distribution too
    with pytest.raises(HonestyError, match="beyond 50× either way"):
        honesty.injection_scale(meta, "m.yaml", release_world["av"])


def test_unloadable_base_is_refused_with_a_fix(project):
    meta = NLAMeta.load(project["av"])
    with pytest.raises(HonestyError, match="does not load.*`base_model:`"):
        honesty.injection_scale(meta, "m.yaml", project["av"], base_model=str(project["root"] / "nowhere"))


def test_tampered_plot_is_refused_and_the_old_bundle_survives(project):
    good = build_bundle(write_spec(project), project["root"] / "out")
    before = (good.root / "av" / "README.md").read_bytes()
    plot = project["eval_pair"] / "plots" / "per_row_cosine.png"
    plot.write_bytes(plot.read_bytes() + b"\0")
    with pytest.raises(HonestyError, match=rf"{plot}: plot 'per_row_cosine' differs"):
        build_bundle(write_spec(project), project["root"] / "out")
    assert (good.root / "av" / "README.md").read_bytes() == before


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_figure_is_refused_naming_it_and_the_file(project, value):
    path, ev = _ev(project)
    ev["figures"]["round_trip"]["all"]["cos"]["ci_high"] = value
    path.write_text(json.dumps(ev))  # Python writes NaN/Infinity, as a hand-edited or foreign file may hold
    with pytest.raises(HonestyError) as info:
        build_bundle(write_spec(project), project["root"] / "out")
    msg = str(info.value)
    assert str(path) in msg and "figure `figures.round_trip.all.cos.ci_high`" in msg and "non-finite" in msg
    assert not (project["root"] / "out").exists()


def test_an_eval_without_provenance_is_refused(project):
    path, ev = _ev(project)
    del ev["provenance"]
    path.write_text(json.dumps(ev))
    with pytest.raises(HonestyError, match=rf"{path}: no `provenance`"):
        build_bundle(write_spec(project), project["root"] / "out")


def test_a_card_filter_refuses_a_non_finite_number():
    from hubkit.release import cards
    from hubkit.release.errors import ReleaseError

    env = cards.environment()
    with pytest.raises(ReleaseError, match="non-finite"):
        env.from_string("{{ x | f3 }}").render(x=float("nan"))
