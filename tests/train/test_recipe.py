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
