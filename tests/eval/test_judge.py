"""Judged claims through a loopback Chat Completions server with a scripted judge (exact arithmetic), and
`hubkit eval --spliced-loss --judge-endpoint` end to end on a tiny adapter pair."""

from __future__ import annotations

import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from hubkit.cli import main
from hubkit.eval.claims import claims
from hubkit.eval.judge import UNPARSED, VERDICTS, judge_claims, parse_verdict
from hubkit.eval.report import read_eval_json

from .conftest import write_table

_CLAIM = re.compile(r"<claim>(.*?)</claim>", re.S)
_TEXT = re.compile(r"<text>(.*?)</text>", re.S)


def scripted_judge(messages: list[dict]) -> str:
    """supported when the claim's last word is in the text; contradicted when the claim says "never";
    an answer without a verdict when it says "maybe"; unsupported otherwise."""
    content = messages[-1]["content"]
    claim, text = _CLAIM.search(content).group(1), _TEXT.search(content).group(1)
    if "maybe" in claim:
        return "I cannot tell."
    if "never" in claim:
        return "<verdict>contradicted</verdict>"
    word = re.findall(r"\w+", claim)[-1] if re.findall(r"\w+", claim) else ""
    return (
        "<verdict>supported</verdict>" if word and word in text else "Verdict: <verdict>unsupported</verdict>"
    )


def expected(text: str, claim: str) -> str:
    if "maybe" in claim:
        return UNPARSED
    if "never" in claim:
        return "contradicted"
    words = re.findall(r"\w+", claim)
    return "supported" if words and words[-1] in text else "unsupported"


@pytest.fixture
def judge_server():
    from data.chat_server import serving  # tests/data, on the path as a test package

    with serving(scripted_judge) as server:
        yield server


@pytest.fixture
def judge(judge_server):
    from hubkit.data.labelers import OpenAIChatLabeler

    return OpenAIChatLabeler(judge_server.base_url, "judge", concurrency=2, max_retries=0)


def test_parse_verdict():
    assert parse_verdict("<verdict> Supported </verdict>") == "supported"
    assert parse_verdict("<verdict>unsupported</verdict>") == "unsupported"
    assert parse_verdict("The claim is not supported.") == "unsupported"
    assert parse_verdict("contradicts the text") == "contradicted"
    assert parse_verdict("no idea") == UNPARSED and parse_verdict(None) == UNPARSED


def test_rates_are_exact_against_the_scripted_judge(judge, judge_server):
    sources = ["The cat sat on the mat.", "Paris is the capital of France.", "Rain falls in spring.", "x"]
    explanations = [
        "It is about a cat. It never moves. Maybe a dog.",
        "A city: France.\nThe text is about Rome.",
        "",
        "Weather in spring. It is never cold. About x. Fourth about y.",
    ]
    jc = judge_claims(judge, sources, explanations, max_claims=3, n_boot=500)
    verdicts = [[expected(s, c) for c in claims(t)[:3]] for s, t in zip(sources, explanations)]
    assert jc.row_verdicts == verdicts
    flat = [v for row in verdicts for v in row]
    judged = [v for v in flat if v != UNPARSED]
    assert jc.verdicts == {w: flat.count(w) for w in (*VERDICTS, UNPARSED)}
    assert jc.n_claims == len(flat) == 8 and jc.n_claims_skipped == 1 and jc.n_rows_with_claims == 3
    assert jc.claim_precision.value == pytest.approx(judged.count("supported") / len(judged))
    assert jc.hallucination_rate.value == pytest.approx(judged.count("contradicted") / len(judged))
    assert jc.unsupported_rate.value == pytest.approx(judged.count("unsupported") / len(judged))
    assert jc.rows_with_contradiction == pytest.approx(2 / 3)
    assert jc.claim_precision.ci_low <= jc.claim_precision.value <= jc.claim_precision.ci_high
    assert len(judge_server.ok_requests()) == len(flat)  # each (source, claim) asked once
    assert "row_verdicts" not in jc.to_dict()


@pytest.fixture(scope="module")
def adapter_pair(tmp_path_factory):
    from hubkit.testing import make_tiny_model, write_adapter_pair

    root = tmp_path_factory.mktemp("judge-pair")
    base = make_tiny_model("llama", d_model=64, n_layers=4).save(root / "base")
    return write_adapter_pair(root / "pair", base, layer=2)


def test_eval_cli_spliced_loss_and_judge(tmp_path, adapter_pair, judge_server):
    av, ar = adapter_pair
    n = 12
    vectors = np.random.default_rng(0).normal(size=(n, 64)) * 3
    table = write_table(tmp_path / "eval.parquet", vectors)
    prefixes = [f"The cat sat on the mat number {i}. Paris is the capital" for i in range(n)]
    t = pq.read_table(table)
    pq.write_table(t.set_column(t.column_names.index("prefix"), "prefix", [prefixes]), str(table))
    out = tmp_path / "out"
    args = ["eval", "--av", av, "--ar", ar, "--table", table, "--out", out, "--max-new-tokens", 16]
    args += [
        "--n-boot",
        200,
        "--spliced-loss",
        "--judge-endpoint",
        judge_server.base_url,
        "--judge-model",
        "j",
    ]
    args += ["--dtype", "float32", "--engine", "transformers"]
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    assert "spliced loss (12 rows): CE orig" in res.output and "judged claims (openai:j" in res.output
    fig = read_eval_json(out)["figures"]
    rows = pq.read_table(out / "rows.parquet").to_pydict()
    sl = fig["spliced_loss"]
    assert sl["n"] == n and sl["target"] == "original_distribution" and sl["layer"] == 2
    ce = {c: np.array(rows[f"spliced_ce_{c}"]) for c in ("original", "reconstruction", "mean", "zero")}
    assert sl["ce_original"]["mean"] == pytest.approx(ce["original"].mean())
    frac = (ce["mean"].mean() - ce["reconstruction"].mean()) / (ce["mean"].mean() - ce["original"].mean())
    assert sl["frac_recovered"] == pytest.approx(frac)
    # against the original's own distribution, CE − CE_original is the KL
    assert np.allclose(ce["zero"] - ce["original"], rows["spliced_kl_zero"], atol=1e-8)
    jc = fig["judge"]
    want = [[expected(p, c) for c in claims(e)[:8]] for p, e in zip(rows["prefix"], rows["explanation"])]
    assert rows["judge_verdicts"] == want
    flat = [v for row in want for v in row if v != UNPARSED]
    if flat:
        assert jc["claim_precision"]["value"] == pytest.approx(flat.count("supported") / len(flat))
    assert jc["n_claims"] == sum(len(r) for r in want)


def test_judge_flags_need_each_other(tmp_path, adapter_pair):
    av, ar = adapter_pair
    table = write_table(tmp_path / "eval.parquet", np.random.default_rng(0).normal(size=(12, 64)))
    args = ["eval", "--av", av, "--ar", ar, "--table", table, "--out", tmp_path / "o"]
    res = CliRunner().invoke(main, [str(a) for a in args] + ["--judge-endpoint", "http://127.0.0.1:9/v1"])
    assert res.exit_code == 2 and "--judge-endpoint needs --judge-model" in res.output
