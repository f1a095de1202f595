from __future__ import annotations

import yaml
from click.testing import CliRunner

from hubkit.cli.train import train

from .train_helpers import write_sft


def _recipe(tmp_path, **extra) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"base_model": "smollm2-135m", "layer": 20, **extra}))
    return str(path)


def test_check_reports_unknown_keys_in_one_line(tmp_path):
    res = CliRunner().invoke(train, ["check", _recipe(tmp_path, av={"stepz": 3})])
    assert res.exit_code == 2
    assert "error: " in res.output and "field `av.stepz` is not a known field" in res.output
    assert "Traceback" not in res.output


def test_check_and_fields(tmp_path):
    res = CliRunner().invoke(train, ["check", _recipe(tmp_path, av={"steps": 7}, ar={})])
    assert res.exit_code == 0, res.output
    assert "av: 7 steps" in res.output and "ar: 100 steps" in res.output and "config sha256" in res.output
    res = CliRunner().invoke(train, ["fields"])
    assert res.exit_code == 0 and "grpo.parse_penalty:" in res.output


def test_missing_section_and_bad_data_are_clear_errors(tmp_path, train_base):
    import torch

    res = CliRunner().invoke(train, ["grpo", _recipe(tmp_path, av={"steps": 1})])
    assert res.exit_code == 2 and "has no `grpo:` section" in res.output
    wide = write_sft(tmp_path / "wide.parquet", torch.randn(2, 48), ["a", "b"])
    recipe = tmp_path / "t.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"base_model": str(train_base), "layer": 1, "output_dir": str(tmp_path / "o"), "av": {"steps": 1}}
        )
    )
    res = CliRunner().invoke(train, ["av", str(recipe), "--data", str(wide), "-q"])
    assert res.exit_code == 2
    assert "column `vector` is 48 wide but the model's d_model is 32" in res.output


def test_a_stage_without_data_names_the_recipe_field_and_the_flag(tmp_path, train_base):
    expected = {"av": "no AV training data", "ar": "no AR training data", "grpo": "no RL data"}
    for stage, what in expected.items():
        recipe = tmp_path / f"{stage}.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "base_model": str(train_base),
                    "layer": 1,
                    "output_dir": str(tmp_path / stage),
                    stage: {"steps": 1},
                }
            )
        )
        res = CliRunner().invoke(train, [stage, str(recipe), "-q"])
        assert res.exit_code == 2, (stage, res.output)
        assert f"error: {what}: set `{stage}.data` in the recipe or pass --data" in res.output


def test_bad_devices_and_run_folders_are_one_line_errors(tmp_path, train_base, sft_table):
    import torch

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "base_model": str(train_base),
                "layer": 1,
                "output_dir": str(tmp_path / "o"),
                "ar": {"steps": 1, "micro_batch_size": 4, "data": str(sft_table[0])},
            }
        )
    )
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out", str(tmp_path / "file" / "run")], "cannot create the run folder"),
        (["--out", "/proc/hubkit-run"], "cannot create the run folder"),
        (["--out", str(tmp_path / ("n" * 300))], "cannot create the run folder"),
    ]
    if not torch.cuda.is_available():  # a CPU build: cuda is refused before anything loads
        cases.append((["--device", "cuda"], "this torch build sees no CUDA GPU; use --device cpu"))
    for extra, expected in cases:
        res = CliRunner().invoke(train, ["ar", str(recipe), "-q", *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert "Traceback" not in res.output and expected in res.output, (extra, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "o").exists()  # nothing written
