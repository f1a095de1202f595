"""No release file names a folder of the machine that built it: a bundle's files are scanned and a
remaining absolute path refuses the release, naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hubkit.release.bundle import build_bundle
from hubkit.release.errors import ReleaseError
from hubkit.release.public import find_local_paths, is_local_path

from .conftest import trajectory_spec, write_spec


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_pair_bundle_has_no_absolute_path(project):
    out = project["root"] / "out"
    build_bundle(write_spec(project), out)
    found = find_local_paths(out)
    assert found == [], "\n".join(found)
    # independent check: no file's bytes contain this machine's project or base folders
    needles = [str(project["root"].resolve()).encode(), str(Path(project["base"]).resolve()).encode()]
    for p in _all_files(out):
        data = p.read_bytes()
        assert not any(n in data for n in needles), p
    av_cfg = json.loads((out / "av" / "adapter_config.json").read_text())
    assert av_cfg["base_model_name_or_path"] == "hubkit-test/tiny-llama"
    meta = yaml.safe_load((out / "ar" / "nla_meta.yaml").read_text())
    assert (
        meta["base_checkpoint"] == "hubkit-test/tiny-llama"
        and meta["hubkit"]["base_model"] == "hubkit-test/tiny-llama"
    )


def test_trajectory_bundle_has_no_absolute_path(project):
    out = project["root"] / "out-traj"
    build_bundle(trajectory_spec(project), out)
    assert find_local_paths(out) == []


def test_a_remaining_path_is_refused_naming_file_and_line(project):
    from .conftest import CARD

    card = {**CARD, "limitations": "Trained from the folder /tmp/our-lab/run-7 only."}
    with pytest.raises(
        ReleaseError, match=r"a[vr]/README\.md: line \d+ holds the absolute local path '/tmp/our-lab/run-7'"
    ):
        build_bundle(write_spec(project, card=card), project["root"] / "out")
    assert not (project["root"] / "out").exists()


def test_a_structured_file_names_the_key(tmp_path):
    from hubkit.release.public import find_local_paths

    (tmp_path / "x.json").write_text(json.dumps({"made_on": {"dirs": ["ok", "/tmp/somewhere/else"]}}))
    (tmp_path / "y.yaml").write_text("a: {b: ~/models/base}\n")
    assert find_local_paths(tmp_path) == [
        "x.json: key `made_on.dirs[1]` holds the absolute local path '/tmp/somewhere/else'",
        "y.yaml: key `a.b` holds the absolute local path '~/models/base'",
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("/root/.cache/hubkit/models/smollm2-135m", "/root/.cache/hubkit/models/smollm2-135m"),
        ("trained in /tmp/x/run", "/tmp/x/run"),
        ("~/models/base", "~/models/base"),
        ("C:\\Users\\me\\base", "C:\\Users\\me\\base"),
        ("https://huggingface.co/org/model/tree/main", None),
        ("Summary <text>{explanation}</text> <summary>", None),
        ("2(1 − cos)/d and a/b/c", None),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", None),
        ("/nonexistent-top-dir/a/b", None),
    ],
)
def test_what_counts_as_a_local_path(text, found):
    assert is_local_path(text) == found


def test_reference_format_release(project):
    """`format: reference`: the halves in the reference layout, checked against the measured checkpoints,
    the card saying so, still no local path."""
    import torch

    from hubkit import ActivationReconstructor

    out = project["root"] / "out-ref"
    build_bundle(write_spec(project, format="reference"), out)
    assert find_local_paths(out) == []
    assert (out / "av" / "model.safetensors").is_file() and not (out / "av" / "adapter_config.json").exists()
    cfg = json.loads((out / "ar" / "config.json").read_text())
    meta = yaml.safe_load((out / "ar" / "nla_meta.yaml").read_text())
    assert cfg["num_hidden_layers"] == meta["critic"]["extraction_layer_index"] + 1
    card = (out / "ar" / "README.md").read_text()
    assert "reference implementation's layout" in card and "largest relative difference" in card
    texts = ["a cat", "", "Paris."]
    want = ActivationReconstructor.from_pretrained(project["ar"], dtype="float32").reconstruct(texts)
    got = ActivationReconstructor.from_pretrained(out / "ar", dtype="float32").reconstruct(texts)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    prov = json.loads((out / "ar" / "provenance.json").read_text())
    assert prov["export"]["format"] == "reference" and prov["export"]["max_rel_diff"] <= 1e-4
