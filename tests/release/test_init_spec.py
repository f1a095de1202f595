"""`hubkit release init`: a spec written from a run and its eval, refused until its prose is written,
then built as it stands."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from hubkit.cli import main
from hubkit.release.bundle import build_bundle
from hubkit.release.spec import PLACEHOLDER, find_placeholders, load_spec

WORDS = {
    "card.intended_use": "Tests.",
    "card.out_of_scope": "Everything else.",
    "card.limitations": "Random weights.",
    "card.citation": "@misc{x, title={x}}",
    "card.base_model": "hubkit-test/tiny-llama",
    "license": "apache-2.0",  # a tiny random Llama-architecture base: of no family the release knows
}


def _init(project, *args) -> tuple[int, str]:
    root = project["root"]
    result = CliRunner().invoke(
        main, ["release", "init", *args, "--run", str(root / "run"), "--releases-dir", str(root / "releases")]
    )
    return result.exit_code, result.output


def _fill(path, words: dict[str, str]) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in words.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_pair_spec_from_run_and_eval(project, release_world):
    code, out = _init(
        project,
        "av-v0.1",
        "--kind",
        "pair",
        "--eval",
        str(project["eval_pair"]),
        "--repo",
        "hubkit-org/tiny-nla",
    )
    assert code == 0, out
    path = project["root"] / "releases" / "av-v0.1.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["repos"] == {"av": "hubkit-org/tiny-nla-av", "ar": "hubkit-org/tiny-nla-ar"}
    # the checkpoints are the ones the eval measured, whatever folder they are in
    assert data["checkpoints"] == {
        "av": str(release_world["av"].resolve()),
        "ar": str(release_world["ar"].resolve()),
    }
    assert data["eval"] == "eval-pair/eval.json"
    assert sorted(k for k, _ in find_placeholders(data)) == sorted(WORDS)
    # refused until written, naming the field
    import pytest

    from hubkit.release.errors import ReleaseError

    with pytest.raises(
        ReleaseError,
        match=r"field `license` is still the placeholder .<<fill in: the Hub licence id.*\(and 5 more\)",
    ):
        load_spec(path)
    code, out = (
        CliRunner()
        .invoke(main, ["release", "av-v0.1", "--releases-dir", str(project["root"] / "releases")])
        .exit_code,
        None,
    )
    assert code != 0
    _fill(path, WORDS)
    bundle = build_bundle(load_spec(path), project["root"] / "out")
    assert [t.repo_id for t in bundle.targets] == ["hubkit-org/tiny-nla-av", "hubkit-org/tiny-nla-ar"]


def test_trajectory_and_av_specs(project):
    code, out = _init(
        project, "traj", "--kind", "trajectory", "--eval", str(project["eval_traj"] / "eval.json")
    )
    assert code == 0, out
    data = yaml.safe_load((project["root"] / "releases" / "traj.yaml").read_text())
    assert data["trajectory"] == "run/av" and data["eval"] == "eval-traj/eval.json"
    assert PLACEHOLDER in data["repos"]["trajectory"]
    # no eval: the last step of the run, and the eval left for the author
    code, out = _init(project, "just-av", "--kind", "av", "--repo", "o/n")
    assert code == 0, out
    data = yaml.safe_load((project["root"] / "releases" / "just-av.yaml").read_text())
    last = sorted(p.name for p in (project["root"] / "run" / "av").glob("step_*"))[-1]
    assert data["checkpoints"] == {"av": f"run/av/{last}"} and PLACEHOLDER in data["eval"]
    code, out = _init(project, "just-av", "--kind", "av")
    assert code != 0 and out.startswith("error: ") and "--force" in out
    code, out = _init(project, "bad", "--kind", "pair", "--eval", str(project["eval_traj"]))
    assert code != 0 and "a 'trajectory' eval" in out
