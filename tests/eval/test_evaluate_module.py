from pathlib import Path

import numpy as np
import pytest

import hubkit.eval
from hubkit.eval.identification import identification
from hubkit.eval.metrics import fve, noise_floor

MODULE = Path(hubkit.eval.__file__).with_name("evaluate_module.py")


def test_evaluate_load_from_path_computes_the_round_trip(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", tmp_path / "modules")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(str(MODULE))
    rng = np.random.default_rng(0)
    v = rng.normal(size=(16, 8))
    v_hat = v + rng.normal(scale=0.5, size=v.shape)
    res = metric.compute(predictions=v_hat.tolist(), references=v.tolist(), n_boot=200)
    # the module stores float32; compare with an independent float64 computation on float32 inputs
    v32, h32 = v.astype(np.float32).astype(float), v_hat.astype(np.float32).astype(float)
    cos = np.sum(v32 * h32, 1) / np.linalg.norm(v32, axis=1) / np.linalg.norm(h32, axis=1)
    assert res["n"] == 16
    assert res["cos_mean"] == pytest.approx(cos.mean(), rel=1e-9)
    assert res["nmse_mean"] == pytest.approx(np.mean(2 * (1 - cos)), rel=1e-9)
    assert res["cos_ci_low"] < res["cos_mean"] < res["cos_ci_high"]
    assert res["fve"] == pytest.approx(fve(v32, h32, n_boot=10).value)
    assert res["noise_floor_p95"] == pytest.approx(noise_floor(v32, h32).p95)
    assert res["top1"] == identification(v32, h32).at(1).accuracy and res["chance_top5"] == 5 / 16
