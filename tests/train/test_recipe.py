from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hubkit.train.recipe import Recipe, RecipeError, load_recipe, recipe_from_dict, recipe_help

REPO = Path(__file__).resolve().parents[2]
BASE = {"base_model": "smollm2-135m", "layer": 20}


def test_unknown_key_is_an_error_naming_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, "av": {"steps": 3, "adapter": {"kind": "lora", "rank": 8}}}))
    with pytest.raises(RecipeError, match=r"r.yaml: field `av.adapter.rank` is not a known field.*'r'"):
        load_recipe(path)
    with pytest.raises(RecipeError, match=r"field `grpo.group_sise` is not a known field"):
        recipe_from_dict({**BASE, "grpo": {"group_sise": 4}})
    with pytest.raises(RecipeError, match=r"field `lr_schedule` is not a known field"):
        recipe_from_dict({**BASE, "lr_schedule": "cosine"})


def test_wrong_types_and_values_are_errors():
    with pytest.raises(RecipeError, match=r"`av.steps` must be an integer"):
        recipe_from_dict({**BASE, "av": {"steps": "ten"}})
    with pytest.raises(RecipeError, match=r"`av.adapter.kind` must be one of \['lora', 'qlora', 'full'\]"):
        recipe_from_dict({**BASE, "av": {"adapter": {"kind": "dora"}}})
    with pytest.raises(RecipeError, match=r"group_size.*>= 2"):
        recipe_from_dict({**BASE, "grpo": {"group_size": 1}})
    with pytest.raises(RecipeError, match=r"field `layer` is required"):
        recipe_from_dict({"base_model": "x"})
    with pytest.raises(RecipeError, match="has no `grpo:` section"):
        recipe_from_dict(BASE).stage("grpo")


def test_bad_files(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- a list\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(bad)


def test_config_hash_tracks_what_changes_the_computation(tmp_path):
    r = recipe_from_dict({**BASE, "av": {"steps": 10, "data": "a.parquet"}, "ar": {"steps": 5}})
    same_but_paths = recipe_from_dict(
        {
            **BASE,
            "output_dir": "elsewhere",
            "av": {"steps": 10, "data": "b.parquet", "log_every": 7},
            "ar": {"steps": 5},
        }
    )
    assert r.config_sha256("av") == same_but_paths.config_sha256("av")
    other_ar = recipe_from_dict({**BASE, "av": {"steps": 10}, "ar": {"steps": 6}})
    assert other_ar.config_sha256("av") == r.config_sha256("av")  # the AR section does not affect the AV run
    assert other_ar.config_sha256("ar") != r.config_sha256("ar")
    lr = recipe_from_dict({**BASE, "av": {"steps": 10, "optim": {"lr": 2e-4}}, "ar": {"steps": 5}})
    assert lr.config_sha256("av") != r.config_sha256("av")
    seed = recipe_from_dict({**BASE, "seed": 1, "av": {"steps": 10}, "ar": {"steps": 5}})
    assert seed.config_sha256("av") != r.config_sha256("av")


def test_overrides_and_round_trip(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**BASE, "av": {"steps": 3}}))
    r = load_recipe(path, {"av.steps": 9, "seed": 4, "grpo.av_init": "x"})
    assert (r.av.steps, r.seed, r.grpo.av_init) == (9, 4, "x")
    copy = r.save(tmp_path / "copy.yaml")
    assert load_recipe(copy) == r
    empty = tmp_path / "empty.yaml"  # `ar:` written with nothing under it is null in YAML
    empty.write_text("base_model: smollm2-135m\nlayer: 20\nar:\n")
    loaded = load_recipe(empty, {"ar.steps": 7, "ar.adapter.r": 4})
    assert (loaded.ar.steps, loaded.ar.adapter.r) == (7, 4)


def test_every_field_has_help():
    lines = recipe_help()
    assert any(line.startswith("grpo.kl_coef: ") and "KL" in line for line in lines)
    assert any(line.startswith("av.adapter.kind: ") for line in lines)
    assert all(": " in line and line.split(": ", 1)[1].strip() for line in lines)


@pytest.mark.parametrize("name", ["smollm2-135m.yaml", "gemma3-270m.yaml", "gemma4-e2b-qlora-4gb.yaml"])
def test_shipped_recipes_parse(name):
    r = load_recipe(REPO / "training" / name)
    assert isinstance(r, Recipe)
    assert r.av is not None and r.ar is not None and r.grpo is not None


def test_shipped_recipes_use_a_layer_about_two_thirds_deep():
    from hubkit import models

    for name, registry in (("smollm2-135m.yaml", "smollm2-135m"), ("gemma3-270m.yaml", "gemma3-270m")):
        r = load_recipe(REPO / "training" / name)
        spec = models.get_spec(registry)
        assert r.base_model == registry
        assert abs(r.layer / spec.n_layers - 2 / 3) < 0.05, (name, r.layer, spec.n_layers)
    qlora = load_recipe(REPO / "training" / "gemma4-e2b-qlora-4gb.yaml")
    assert qlora.av.adapter.kind == "qlora" and qlora.av.optim.optimizer == "adamw_8bit"
    assert qlora.av.gradient_checkpointing


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            {"av": {"optim": {"lr": float("inf")}}},
            r"field `av.optim.lr` must be a finite number > 0, got inf",
        ),
        (
            {"av": {"optim": {"lr": float("nan")}}},
            r"field `av.optim.lr` must be a finite number > 0, got nan",
        ),
        (
            {"av": {"optim": {"lr": 1e39}}},
            r"field `av.optim.lr` must be a finite number > 0, within float32 range .*, got 1e\+39",
        ),
        ({"ar": {"optim": {"lr": 0.0}}}, r"field `ar.optim.lr` must be a finite number > 0, got 0.0"),
        ({"ar": {"optim": {"lr": -1e-4}}}, r"field `ar.optim.lr` must be a finite number > 0"),
        ({"av": {"steps": 0}}, r"field `av.steps` must be an integer >= 1, got 0"),
        ({"av": {"micro_batch_size": 0}}, r"field `av.micro_batch_size` must be .* >= 1, got 0"),
        ({"av": {"grad_accum": -2}}, r"field `av.grad_accum` must be .* >= 1, got -2"),
        ({"av": {"optim": {"betas": [0.9, 1.5]}}}, r"field `av.optim.betas\[1\]` must be .* >= 0 and < 1"),
        ({"av": {"optim": {"eps": 0.0}}}, r"field `av.optim.eps` must be a finite number > 0"),
        ({"av": {"optim": {"max_grad_norm": float("inf")}}}, r"field `av.optim.max_grad_norm` must be"),
        ({"av": {"optim": {"weight_decay": -0.1}}}, r"field `av.optim.weight_decay` must be .* >= 0"),
        ({"av": {"adapter": {"dropout": float("nan")}}}, r"field `av.adapter.dropout` must be"),
        ({"av": {"adapter": {"alpha": float("-inf")}}}, r"field `av.adapter.alpha` must be .* > 0"),
        ({"ar": {"head_lr": float("inf")}}, r"field `ar.head_lr` must be a finite number > 0"),
        ({"grpo": {"temperature": float("inf")}}, r"field `grpo.temperature` must be a finite number > 0"),
        ({"grpo": {"top_p": 1.5}}, r"field `grpo.top_p` must be .* <= 1"),
        ({"grpo": {"kl_coef": float("nan")}}, r"field `grpo.kl_coef` must be"),
        ({"grpo": {"ar_lr": float("inf")}}, r"field `grpo.ar_lr` must be"),
        (
            {"nla": {"injection_scale": float("inf")}},
            r"field `nla.injection_scale` must be a finite number > 0",
        ),
        ({"nla": {"injection_scale": -3.0}}, r"field `nla.injection_scale` must be a finite number > 0"),
        ({"nla": {"mse_scale": 0.0}}, r"field `nla.mse_scale` must be a finite number > 0"),
        ({"layer": -1}, r"field `layer` must be an integer >= 0"),
    ],
)
def test_non_finite_and_out_of_range_numbers_name_the_field(tmp_path, section, expected):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"base_model": "x", "layer": 3, **section}))
    with pytest.raises(RecipeError, match=rf"r.yaml: {expected}"):
        load_recipe(path)


def test_yaml_inf_learning_rate_is_refused_by_train_check_in_one_line(tmp_path):
    from click.testing import CliRunner

    from hubkit.cli.train import train

    path = tmp_path / "r.yaml"
    path.write_text("base_model: x\nlayer: 3\nav:\n  optim:\n    lr: .inf\n")
    res = CliRunner().invoke(train, ["check", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip() == f"error: {path}: field `av.optim.lr` must be a finite number > 0, got inf"
    res = CliRunner().invoke(train, ["av", str(path), "--steps", "0"])
    assert res.exit_code == 2 and "field `av.steps` must be an integer >= 1, got 0" in res.output
