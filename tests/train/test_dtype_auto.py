"""`dtype: auto` is the recipes' default: the precision is chosen from the hardware, recorded in every
checkpoint's meta, hashed into the resume check, and a forced dtype still wins."""

from __future__ import annotations

import pytest
import torch
import yaml

from hubkit.meta import NLAMeta
from hubkit.precision import resolve_dtype_name
from hubkit.train.loop import RunOptions
from hubkit.train.recipe import load_recipe
from hubkit.train.sft_ar import train_ar

from .train_helpers import make_recipe

AR = {"steps": 1, "micro_batch_size": 4, "checkpoint_every": 1, "adapter": {"r": 2}}
REPO_RECIPES = ("smollm2-135m", "gemma3-270m", "gemma4-e2b-qlora-4gb")


def test_recipes_default_to_auto(tmp_path):
    from pathlib import Path

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"base_model": "x", "layer": 1}))
    assert load_recipe(path).dtype == "auto"
    repo = Path(__file__).resolve().parents[2] / "training"
    assert {load_recipe(repo / f"{name}.yaml").dtype for name in REPO_RECIPES} == {"auto"}


@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_the_resolved_dtype_is_recorded_and_hashed(tmp_path, train_base, sft_table, dtype):
    recipe = make_recipe(train_base, tmp_path / "o", dtype=dtype, ar={**AR, "data": str(sft_table[0])})
    last = train_ar(recipe, RunOptions(quiet=True))
    resolved = resolve_dtype_name(dtype, "cpu")
    assert resolved == ("bfloat16" if dtype == "auto" and _native_bf16() else "float32")
    training = NLAMeta.load(last).training
    assert training.dtype == resolved
    assert training.config_sha256 == recipe.config_sha256("ar", resolved)
    if (
        dtype == "auto"
    ):  # the hash names the precision, never "auto": another machine cannot resume it silently
        assert recipe.config_sha256("ar", resolved) != recipe.config_sha256("ar", "float16")


def _native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_dtype_flag_forces_a_precision(tmp_path, train_base, sft_table):
    from click.testing import CliRunner

    from hubkit.cli.train import train

    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(train_base),
                "layer": 1,
                "output_dir": str(tmp_path / "o"),
                "ar": {**AR, "data": str(sft_table[0])},
            }
        )
    )
    res = CliRunner().invoke(train, ["ar", str(path), "--dtype", "float32"])
    assert res.exit_code == 0, res.output
    assert "[ar] dtype float32 (recipe: float32)" in res.output
    assert NLAMeta.load(tmp_path / "o" / "ar" / "step_000001").training.dtype == "float32"
    res = CliRunner().invoke(train, ["ar", str(path), "--dtype", "float8"])
    assert (
        res.exit_code == 2 and "'float8' is not one of 'auto', 'float32', 'bfloat16', 'float16'" in res.output
    )
