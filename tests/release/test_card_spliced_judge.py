"""The spliced-loss and judged-claims sections of eval.json render in the model card with their intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import ModelCard

from hubkit.eval.judge import judge_claims
from hubkit.eval.metrics import to_plain
from hubkit.eval.spliced import SplicedRows, summarize_spliced
from hubkit.release.bundle import build_bundle

from .conftest import family_project
from .test_families import _spec


class Scripted:
    name = "scripted"

    def chat(self, conversations):
        return [
            "<verdict>supported</verdict>" if i % 3 else "<verdict>contradicted</verdict>"
            for i in range(len(conversations))
        ]


@pytest.fixture
def smol(tmp_path, family_worlds) -> dict:
    return family_project(tmp_path, family_worlds("smollm"))


def test_sections_render_with_intervals(smol):
    rng = np.random.default_rng(0)
    o = rng.uniform(1, 2, 20)
    rows = SplicedRows(
        ce={"original": o, "reconstruction": o + 0.5, "mean": o + 2.0, "zero": o + 3.0},
        kl={"reconstruction": np.full(20, 0.5), "mean": np.full(20, 2.0), "zero": np.full(20, 3.0)},
        targets=["next_token"] * 20,
    )
    sl = summarize_spliced(rows, 20, "mean of the 20 eval vectors", n_boot=200)
    jc = judge_claims(Scripted(), ["src"] * 6, ["A. B. C."] * 6, n_boot=200)
    ev_path = smol["eval"] / "eval.json"
    ev = json.loads(ev_path.read_text())
    ev["figures"]["spliced_loss"] = to_plain(sl)
    ev["figures"]["judge"] = to_plain(jc)
    ev_path.write_text(json.dumps(ev))
    spec = _spec(smol, "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-tiny")
    body = ModelCard.load(build_bundle(spec, smol["root"] / "out").root / "av" / "README.md").text
    assert "### Spliced loss" in body and "### Judged claims" in body
    assert sl.frac_recovered == pytest.approx(0.75)
    assert (
        f"| **fraction of loss recovered** | 0.750 [{sl.frac_recovered_ci_low:.3f}, {sl.frac_recovered_ci_high:.3f}]"
        in body
    )
    assert f"| reconstruction | {sl.ce_reconstruction.mean:.4f} [" in body
    assert jc.claim_precision.value == pytest.approx(12 / 18)
    assert "claim precision (supported / judged) | 66.7%" in body


def test_trajectory_card_shows_spliced_loss_per_checkpoint(project):
    from .conftest import trajectory_spec

    ev_path = project["eval_traj"] / "eval.json"
    ev = json.loads(ev_path.read_text())
    for i, p in enumerate(ev["figures"]["trajectory"]["checkpoints"]):
        p["spliced_loss"] = {
            "frac_recovered": 0.1 * i,
            "ci_low": 0.1 * i - 0.05,
            "ci_high": 0.1 * i + 0.05,
            "kl_reconstruction": 1.5 - 0.1 * i,
        }
    ev_path.write_text(json.dumps(ev))
    bundle = build_bundle(trajectory_spec(project), project["root"] / "out-spliced")
    body = ModelCard.load(bundle.root / "trajectory" / "README.md").text
    assert "| `step_000002` | 0.100 [0.050, 0.150] | 1.4000 |" in body
    assert "| `step_000003` | 0.200 [0.150, 0.250] | 1.3000 |" in body
