"""`hubkit check` on a base model folder and on AV/AR checkpoints, through the library and the CLI;
facts are compared with numbers computed here straight from the saved files."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open
from torch import nn
from transformers import AutoTokenizer

from hubkit import constants as C
from hubkit.check import check
from hubkit.checkpoint import write_checkpoint
from hubkit.cli import main
from hubkit.errors import CheckpointError
from hubkit.heads import identity_head
from hubkit.meta import NLAMeta
from hubkit.testing import make_tiny_model, tiny_metas

D = 32


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model("gemma3", d_model=D, n_layers=3)  # Gemma: embeddings scaled by sqrt(d)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tiny) -> Path:
    return tiny.save(tmp_path_factory.mktemp("tiny-gemma3-base"))


@pytest.fixture(scope="module")
def median_bracket(base_dir: Path) -> tuple[float, float]:
    """The two middle embedding-row norms (× sqrt(hidden_size) for Gemma), read from the saved files."""
    cfg = json.loads((base_dir / "config.json").read_text())
    assert cfg["model_type"].startswith("gemma")
    with safe_open(str(base_dir / "model.safetensors"), "pt") as f:
        weight = f.get_tensor("model.embed_tokens.weight").double()
    norms = sorted(float(n) * math.sqrt(cfg["hidden_size"]) for n in weight.norm(dim=1))
    return norms[(len(norms) - 1) // 2], norms[len(norms) // 2]


@pytest.fixture(scope="module")
def residual_median(base_dir: Path) -> float:
    """Median norm of hidden_states[LAYER + 1] over the tokens of the texts the check measures on,
    computed here with the model's own output_hidden_states, one text at a time (no padding)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from hubkit.scale_lint import bundled_texts

    model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    norms = []
    with torch.no_grad():
        for text in bundled_texts(8):
            ids = tok(text, truncation=True, max_length=128, return_tensors="pt")
            out = model(**ids, output_hidden_states=True)
            norms += out.hidden_states[LAYER + 1][0].double().norm(dim=-1).tolist()
    return float(np.sort(norms)[(len(norms) - 1) // 2])


LAYER = 1  # tiny_metas' default layer


def _invoke(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def _av_checkpoint(folder: Path, tiny, base_dir: Path, scale: float, ood_allowed: bool = False) -> Path:
    av, _ = tiny_metas(tiny, scale=scale, base_model=str(base_dir))
    av.injection.ood_allowed = ood_allowed
    return write_checkpoint(folder, tiny.model, tiny.tokenizer, av)


# -- base model ------------------------------------------------------------------------------------
def test_base_model_facts(base_dir: Path, median_bracket) -> None:
    cfg = json.loads((base_dir / "config.json").read_text())
    report = check(str(base_dir))
    assert report.kind == "base model" and report.ok
    assert report.facts["d_model"] == cfg["hidden_size"] == D
    assert report.facts["layers"] == cfg["num_hidden_layers"] == 3
    assert report.facts["embedding scale"] == pytest.approx(math.sqrt(D), rel=1e-6)
    lo, hi = median_bracket
    assert lo - 5e-5 <= report.facts["median embedding norm"] <= hi + 5e-5  # rounded to 4 decimals
    marker = ast.literal_eval(report.facts["single-token marker"])  # a repr'd one-character string
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    assert len(tokenizer(marker, add_special_tokens=False)["input_ids"]) == 1


def test_base_model_through_the_cli(base_dir: Path) -> None:
    result = _invoke(str(base_dir))
    assert result.exit_code == 0, result.output
    assert "(base model)" in result.output and "result: PASS" in result.output
    assert f"d_model                      {D}" in result.output


# -- AV checkpoints: the injection scale against the embedding norm ---------------------------------
def test_av_with_a_sane_scale_passes(tmp_path: Path, tiny, base_dir: Path, median_bracket) -> None:
    lo, _ = median_bracket
    folder = _av_checkpoint(tmp_path / "av", tiny, base_dir, scale=2.0 * lo)
    report = check(str(folder), base_model=str(base_dir))
    assert report.ok and report.kind == "NLA AV checkpoint"
    assert report.facts["scale / embedding norm"] == pytest.approx(2.0, abs=2e-3)
    assert [f.level for f in report.findings] == ["ok"]
    result = _invoke(str(folder), "--base-model", str(base_dir))
    assert result.exit_code == 0, result.output
    assert "result: PASS" in result.output and "OUT OF DISTRIBUTION" not in result.output


def test_av_with_a_510x_scale_fails(
    tmp_path: Path, tiny, base_dir: Path, median_bracket, residual_median: float
) -> None:
    """The retracted release: trained at 510× the norms its base has ever seen. The lint fails only
    beyond 50× the larger of the embedding and residual norms (issue 9: scales follow either one)."""
    lo, _ = median_bracket
    larger = max(lo, residual_median)
    folder = _av_checkpoint(tmp_path / "av", tiny, base_dir, scale=510.0 * larger)
    report = check(str(folder), base_model=str(base_dir))
    assert not report.ok
    ratios = (report.facts["scale / embedding norm"], report.facts["scale / residual norm"])
    assert max(ratios) == pytest.approx(510.0 * larger / min(lo, residual_median), rel=2e-3)
    assert min(ratios) == pytest.approx(510.0, rel=2e-3)
    errors = [f for f in report.findings if f.level == "error"]
    assert len(errors) == 1 and "OUT OF DISTRIBUTION" in errors[0].message and "510" in errors[0].message
    result = _invoke(str(folder), "--base-model", str(base_dir))
    assert result.exit_code == 1
    assert "OUT OF DISTRIBUTION" in result.output and "result: FAIL" in result.output


def test_av_with_a_deliberate_ood_scale_warns_but_passes(
    tmp_path: Path, tiny, base_dir: Path, median_bracket, residual_median: float
) -> None:
    lo, _ = median_bracket
    scale = 510.0 * max(lo, residual_median)
    folder = _av_checkpoint(tmp_path / "av", tiny, base_dir, scale=scale, ood_allowed=True)
    assert NLAMeta.load(folder).injection.ood_allowed is True
    report = check(str(folder), base_model=str(base_dir))
    assert report.ok
    (warn,) = report.warnings
    assert warn.level == "warn" and "OUT OF DISTRIBUTION" in warn.message and "ood_allowed" in warn.message
    result = _invoke(str(folder), "--base-model", str(base_dir))
    assert result.exit_code == 0, result.output
    assert "[WARN] OUT OF DISTRIBUTION" in result.output and "result: PASS" in result.output


def test_av_scale_too_small_fails_too(tmp_path: Path, tiny, base_dir: Path, median_bracket) -> None:
    lo, _ = median_bracket
    folder = _av_checkpoint(tmp_path / "av", tiny, base_dir, scale=lo / 60.0)
    report = check(str(folder), base_model=str(base_dir))
    assert not report.ok and report.facts["scale / embedding norm"] == pytest.approx(1 / 60.0, abs=1e-3)


def test_residual_add_av_needs_no_scale(tmp_path: Path, tiny, base_dir: Path) -> None:
    av, _ = tiny_metas(tiny, scheme="residual_add", base_model=str(base_dir))
    folder = write_checkpoint(tmp_path / "av", tiny.model, tiny.tokenizer, av)
    report = check(str(folder))
    assert report.ok and "residual addition at block 1" in report.findings[0].message


# -- AR checkpoints: the head file ---------------------------------------------------------------------
def test_ar_with_a_good_head_passes(tmp_path: Path, tiny, base_dir: Path) -> None:
    _, ar = tiny_metas(tiny, base_model=str(base_dir))
    folder = write_checkpoint(tmp_path / "ar", tiny.model, tiny.tokenizer, ar, head=identity_head(D))
    report = check(str(folder))
    assert report.ok and report.kind == "NLA AR checkpoint"
    assert report.facts["AR kept blocks"] == 2 and report.facts["head"] == "value_head"


@pytest.mark.parametrize("shape", [(D, D - 1), (D - 1, D)])
def test_ar_with_a_head_of_the_wrong_shape_fails_naming_the_file(
    tmp_path: Path, tiny, base_dir, shape
) -> None:
    _, ar = tiny_metas(tiny, base_model=str(base_dir))
    head = nn.Linear(shape[1], shape[0], bias=False)
    folder = write_checkpoint(tmp_path / "ar", tiny.model, tiny.tokenizer, ar, head=head)
    with safe_open(str(folder / C.VALUE_HEAD_FILE), "pt") as f:
        assert tuple(f.get_slice("weight").get_shape()) == shape
    report = check(str(folder))
    assert not report.ok
    (err,) = [f for f in report.findings if f.level == "error"]
    assert str(folder / C.VALUE_HEAD_FILE) in err.message and str(shape) in err.message
    result = _invoke(str(folder))
    assert result.exit_code == 1
    assert "[FAIL]" in result.output and C.VALUE_HEAD_FILE in result.output


def test_ar_whose_head_file_is_missing_fails(tmp_path: Path, tiny, base_dir: Path) -> None:
    _, ar = tiny_metas(tiny, base_model=str(base_dir))
    folder = write_checkpoint(tmp_path / "ar", tiny.model, tiny.tokenizer, ar, head=None)
    report = check(str(folder))
    assert not report.ok and "missing" in report.findings[0].message


# -- bad targets -------------------------------------------------------------------------------------
def test_broken_meta_is_a_fail_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / C.META_FILE).write_text("schema: hubkit.nla/1\nrole: [av\n")
    report = check(str(tmp_path))
    assert not report.ok and str(tmp_path / C.META_FILE) in report.findings[0].message
    assert _invoke(str(tmp_path)).exit_code == 1


def test_folder_that_is_neither_checkpoint_nor_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError) as err:
        check(str(tmp_path))
    for name in (C.META_FILE, C.AR_META_JSON, C.MODEL_CONFIG_FILE):
        assert name in str(err.value)
    result = _invoke(str(tmp_path))
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    result = _invoke(str(tmp_path / "no" / "such" / "dir"))
    assert result.exit_code == 2 and "error:" in result.output
    assert "neither an existing folder nor a Hub repo id" in result.output


def test_base_model_option_overrides_the_metas_base(
    tmp_path: Path, tiny, base_dir: Path, median_bracket
) -> None:
    """The AV's scale is measured against the base named by --base-model, not the meta's (absent) one."""
    lo, _ = median_bracket
    av, _ = tiny_metas(tiny, scale=2.0 * lo, base_model="org/not-on-this-machine")
    folder = write_checkpoint(tmp_path / "av", tiny.model, tiny.tokenizer, av)
    report = check(str(folder), base_model=str(base_dir))
    assert report.ok and report.facts["base model"] == "org/not-on-this-machine"
    assert report.facts["scale / embedding norm"] == pytest.approx(2.0, abs=2e-3)
