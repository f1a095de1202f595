"""`hubkit inspect` on a tiny adapter pair: vectors equal `hubkit extract`, explanations equal `hubkit explain`,
cosines equal `hubkit round-trip`; the files' layout; chats and replies."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from safetensors.torch import load_file

from .cli_runs import F32, explain_and_round_trip, extract_text, inspect, records

D, LAYER = 64, 2
TEXT = (
    "The cat sat on the mat and looked at the door. Paris is the capital of France. "
    "Rivers flow to the sea; rain falls in spring."
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from hubkit.testing import make_tiny_model, write_adapter_pair

    root = tmp_path_factory.mktemp("inspect")
    os.environ["HUBKIT_CACHE"] = str(root / "cache")
    base = make_tiny_model("llama", d_model=D, n_layers=4).save(root / "base")
    av, ar = write_adapter_pair(root / "pair", base, layer=LAYER)
    return {"root": root, "base": base, "av": av, "ar": ar}


@pytest.fixture(scope="module")
def inspected(ws):
    args = ["--text", TEXT, "--max-new-tokens", 12, "--spliced-loss", *F32]
    return inspect(ws["av"], ws["ar"], ws["root"] / "ins", *args)


def test_vectors_equal_hubkit_extract(ws, inspected):
    positions, extracted = extract_text(ws["base"], TEXT, ws["root"], LAYER)
    vectors = load_file(str(inspected / "vectors.safetensors"))["vectors"]
    recs = records(inspected)
    assert [r["index"] for r in recs] == list(range(len(recs)))  # every token, BOS included
    assert len(positions) == len(recs) - 1  # extract skips only the BOS (a special token)
    diff = (vectors[positions] - extracted).abs().max().item()
    assert diff <= 1e-5, diff
    for r, v in zip(recs, vectors):
        assert r["norm"] == pytest.approx(float(v.norm()), rel=1e-5)


def test_explanations_and_cosines_equal_explain_and_round_trip(ws, inspected):
    exp, rt = explain_and_round_trip(
        ws["av"], ws["ar"], inspected / "vectors.safetensors", ws["root"], "--max-new-tokens", 12, *F32
    )
    recs = records(inspected)
    assert [r["explanation"] for r in recs] == [e["text"] for e in exp] == [t["text"] for t in rt]
    assert [r["status"] for r in recs] == [e["status"] for e in exp]
    for r, t in zip(recs, rt):
        assert r["cos"] == pytest.approx(t["cos"], abs=2e-6)
        assert r["mse_nrm"] == pytest.approx(2 * (1 - r["cos"]))


def test_fve_uses_the_recorded_baseline_and_says_where_it_came_from(inspected):
    summary = json.loads((inspected / "inspect.json").read_text())
    assert summary["baseline_source"].startswith("measured on the bundled corpus")
    b = summary["baseline_b"]
    for r in records(inspected):
        assert r["fve_nrm"] == pytest.approx(1 - r["mse_nrm"] / b)
    sp = summary["spliced_loss"]
    assert sp["n"] == len(records(inspected)) and sp["layer"] == LAYER and sp["target"] == "mixed"


def test_transcript_follows_the_reference_layout(inspected):
    text = (inspected / "transcript.txt").read_text()
    for heading in (
        "1. TEXT",
        "2. BASE MODEL REPLY (temp=0)",
        "3. PER-TOKEN NLA INFERENCE (layer-2 activation",
    ):
        assert heading in text
    line = re.compile(
        r"^\[\s*(\d+)\]  (PROMPT|REPLY )  token=(.+?)  \|\|v\|\|=[\d.]+  mse_nrm=-?[\d.]+  cos=-?[\d.]+  "
        r"fve_nrm=-?[\d.]+",
        re.M,
    )
    found = line.findall(text)
    assert [int(i) for i, _, _ in found] == [r["index"] for r in records(inspected)]
    assert "─── Summary (" in text and text.rstrip().endswith("═" * 80)


def test_page_is_self_contained_with_one_span_per_token(inspected):
    page = (inspected / "index.html").read_text()
    assert len(re.findall(r'<span class="tok" id="t\d+" data-i="\d+"', page)) == len(records(inspected))
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<th" in page and 'id="strip"' in page


def test_chat_with_reply_and_positions(ws, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"role": "user", "content": "Where is Paris?"}]))
    args = ["--chat", chat, "--reply", 4, "--positions", "reply", "--max-new-tokens", 6, "--baseline-b", 0.8]
    out = inspect(ws["av"], ws["ar"], tmp_path / "o", *args, *F32)
    recs = records(out)
    summary = json.loads((out / "inspect.json").read_text())
    assert 1 <= len(recs) <= 4 and all(r["role"] == "reply" for r in recs)
    assert summary["n_tokens"] == summary["n_prompt"] + len(recs)
    assert summary["baseline_b"] == 0.8 and "--baseline-b" in summary["baseline_source"]
    assert "1. CHAT-FORMATTED PROMPT" in (out / "transcript.txt").read_text()


def test_python_api_matches_positions(ws):
    from hubkit.pair import NLAPair

    pair = NLAPair.from_pretrained(av=ws["av"], ar=ws["ar"], dtype="float32")
    ins = pair.inspect(TEXT, positions="1,-1", max_new_tokens=6, baseline_b=1.0)
    n = len(ins.sequence.ids)
    assert ins.positions == [1, n - 1] and ins.vectors.shape == (2, D)
    assert ins.transcript().count("PROMPT  token=") == 2
    assert "<!DOCTYPE html>" in ins.to_html()


def test_a_full_weights_av_reads_its_base_not_itself(ws, tmp_path):
    """A full fine-tune's AV is not its base: inspect loads the base its meta names for the vectors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubkit.checkpoint import write_checkpoint
    from hubkit.heads import identity_head
    from hubkit.testing import TinyModel, tiny_metas

    model = AutoModelForCausalLM.from_pretrained(str(ws["base"]))
    tok = AutoTokenizer.from_pretrained(str(ws["base"]))
    av_meta, ar_meta = tiny_metas(TinyModel(model, tok, "saved"), layer=LAYER, base_model=str(ws["base"]))
    ar = write_checkpoint(tmp_path / "ar", model, tok, ar_meta, head=identity_head(D))
    with torch.no_grad():  # the "fine-tuned" AV differs from its base in every block
        for p in model.model.layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    av = write_checkpoint(tmp_path / "av", model, tok, av_meta)
    out = inspect(av, ar, tmp_path / "o", "--text", TEXT, "--max-new-tokens", 4, "--baseline-b", 1.0, *F32)
    positions, extracted = extract_text(ws["base"], TEXT, tmp_path, LAYER)
    vectors = load_file(str(out / "vectors.safetensors"))["vectors"]
    assert (vectors[positions] - extracted).abs().max().item() <= 1e-5
