"""Release specs: found in ./releases, validated with errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hubkit.release.errors import ReleaseError
from hubkit.release.spec import find_spec, load_spec

REPO_ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "kind": "pair",
    "tag": "v0.1",
    "license": "apache-2.0",
    "repos": {"av": "org/x-av", "ar": "org/x-ar"},
    "checkpoints": {"av": "a", "ar": "b"},
    "eval": "eval.json",
    "card": {"intended_use": "u", "limitations": "l", "citation": "@misc{x}"},
}


def _write(folder: Path, data: dict, name: str = "r") -> Path:
    (folder / "releases").mkdir(parents=True, exist_ok=True)
    path = folder / "releases" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_spec_in_the_repo_validates():
    ls = load_spec("example-pair", releases_dir=REPO_ROOT / "releases")
    assert ls.spec.kind == "pair" and ls.spec.pushed_roles == ["av", "ar"]
    assert ls.root == REPO_ROOT  # relative paths resolve against the folder holding releases/
    assert ls.resolve(ls.spec.checkpoints["av"]) == REPO_ROOT / ls.spec.checkpoints["av"]


def test_found_by_name_in_cwd_releases(tmp_path, monkeypatch):
    _write(tmp_path, GOOD, "mine")
    monkeypatch.chdir(tmp_path)
    assert find_spec("mine").resolve() == (tmp_path / "releases" / "mine.yaml").resolve()
    with pytest.raises(ReleaseError, match=r"no release spec 'other'.*specs there: \['mine'\]"):
        find_spec("other")


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"kind": "model"}, "kind", "must be one of"),
        ({"colour": "red"}, "colour", "not a known field"),
        ({"tag": "v 1"}, "tag", "not a valid tag"),
        ({"repos": {"av": "no-slash", "ar": "org/x-ar"}}, "repos.av", "not a repo id"),
        ({"repos": {"av": "org/x-av"}}, "repos.ar", "required for a `pair` release"),
        ({"checkpoints": {"av": "a"}}, "checkpoints.ar", "required for a `pair` release"),
        ({"eval": None}, "eval", "required for a `pair` release"),
        ({"trajectory": "run"}, "trajectory", "does not apply"),
        ({"card": {"intended_use": "u", "limitations": "l"}}, "card.citation", "required but missing"),
        (
            {"card": {"intended_use": " ", "limitations": "l", "citation": "c"}},
            "card.intended_use",
            "must not be empty",
        ),
        ({"corrections": [{"checkpoint": "av"}]}, "corrections[0].reason", "required but missing"),
        ({"license": 3}, "license", "must be a string"),
        ({"license": "apache2"}, "license", "not a Hub licence id; did you mean apache-2.0"),
        ({"repos": {"av": "org/x", "ar": "org/x"}}, "repos.av", "each half needs its own repo"),
        ({"repos": {"av": "Org/X", "ar": "org/x"}}, "repos.av", "the repo `repos.ar` names too"),
        ({"kind": "dataset"}, "data_files", "required for a `dataset` release"),
        ({"kind": "trajectory", "checkpoints": {}}, "trajectory", "required for a `trajectory` release"),
    ],
)
def test_bad_spec_names_the_field(tmp_path, change, field, message):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = _write(tmp_path, data)
    with pytest.raises(ReleaseError) as info:
        load_spec(path)
    text = str(info.value)
    assert str(path) in text
    assert f"`{field}`" in text and message in text


def test_not_yaml_and_not_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: [unclosed\n")
    with pytest.raises(ReleaseError, match="not valid YAML"):
        load_spec(path)
    path.write_text("- a list\n")
    with pytest.raises(ReleaseError, match="expected a mapping"):
        load_spec(path)
