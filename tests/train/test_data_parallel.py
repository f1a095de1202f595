"""Two processes (torchrun, gloo on CPU) train exactly what one process with twice the accumulation trains."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hubkit.train.loop import RunOptions
from hubkit.train.sft_ar import train_ar

from .train_helpers import make_recipe, torchrun

REPO = Path(__file__).resolve().parents[2]
AR = {
    "steps": 2,
    "micro_batch_size": 2,
    "checkpoint_every": 2,
    "head_lr": 1e-2,
    "adapter": {"r": 4, "dropout": 0.1},
    "optim": {"lr": 1e-2},
}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_processes_equal_one_with_double_accumulation(tmp_path, train_base, sft_table):
    data = str(sft_table[0])
    recipe = tmp_path / "dp.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "base_model": str(train_base),
                "layer": 1,
                "output_dir": str(tmp_path / "dp"),
                "dtype": "float32",
                "ar": {**AR, "grad_accum": 1, "data": data},
            }
        )
    )
    done = torchrun(["-m", "hubkit.cli", "train", "ar", str(recipe), "-q"])
    assert done.returncode == 0, done.stderr[-3000:]
    single = train_ar(
        make_recipe(train_base, tmp_path / "sp", ar={**AR, "grad_accum": 2, "data": data}),
        RunOptions(quiet=True),
    )
    multi = tmp_path / "dp" / "ar" / "step_000002"
    for name in ("adapter_model.safetensors", "value_head.safetensors"):
        a, b = load_file(str(multi / name)), load_file(str(single / name))
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    assert "world_size" in (multi / "trainer_state.json").read_text()
    assert sys.executable  # the launcher used this interpreter's torchrun
