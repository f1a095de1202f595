from __future__ import annotations

import json

import pytest
import torch

from hubkit.meta import NLAMeta
from hubkit.reconstructor import ActivationReconstructor, build_ar_ids
from hubkit.train.loop import RunOptions
from hubkit.train.sft_ar import train_ar

from .train_helpers import make_recipe

AR = {
    "steps": 8,
    "micro_batch_size": 4,
    "grad_accum": 2,
    "checkpoint_every": 8,
    "head_lr": 5e-2,
    "adapter": {"r": 8, "alpha": 16},
    "optim": {"lr": 1e-2},
}


def independent_nmse(model, tokenizer, meta: NLAMeta, head: torch.Tensor, vectors, texts) -> float:
    """Mean 2(1 − cos) between head(hidden_states[K+1] at the last token) and the targets, row by row."""
    out = []
    for v, text in zip(vectors, texts):
        inner = text.split("<explanation>")[-1].split("</explanation>")[0].strip()
        ids = torch.tensor([build_ar_ids(tokenizer, meta, inner)])
        with torch.no_grad():
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[meta.ar.num_layers][0, -1]
        out.append(2 * (1 - torch.cosine_similarity(h @ head.T, v, dim=0)))
    return float(torch.stack(out).mean())


def test_ar_loss_goes_down_and_is_the_normalised_mse(tmp_path, train_base, sft_table):
    data, vectors, texts = sft_table
    recipe = make_recipe(train_base, tmp_path / "run", ar={**AR, "data": str(data)})
    last = train_ar(recipe, RunOptions(quiet=True))
    metrics = [
        json.loads(line) for line in (tmp_path / "run" / "ar" / "metrics.jsonl").read_text().splitlines()
    ]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(
        train_base
    )  # full depth: hidden_states[K+1] is block K's output
    tok = AutoTokenizer.from_pretrained(train_base)
    meta = NLAMeta.load(last)
    before = independent_nmse(base, tok, meta, torch.eye(meta.d_model), vectors, texts)
    assert metrics[0]["loss"] == pytest.approx(before, rel=1e-4)  # step 1: identity head, zero LoRA, all rows

    ar = ActivationReconstructor.from_pretrained(last)
    v_hat = ar.reconstruct([t.split("<explanation>")[-1].split("</explanation>")[0].strip() for t in texts])
    after = float((2 * (1 - torch.cosine_similarity(v_hat, vectors, dim=-1))).mean())
    assert after < 0.8 * before, (before, after)
    assert (meta.role, meta.training.stage, meta.training.step, meta.ar.num_layers) == ("ar", "ar_sft", 8, 2)
    assert meta.training.loss_type == "normalised_mse"


def test_full_fine_tuned_ar_is_saved_truncated(tmp_path, train_base, sft_table):
    ar_cfg = {
        **AR,
        "steps": 2,
        "checkpoint_every": 2,
        "data": str(sft_table[0]),
        "adapter": {"kind": "full"},
        "head_bias": True,
        "optim": {"lr": 1e-3},
    }
    last = train_ar(make_recipe(train_base, tmp_path / "run", ar=ar_cfg), RunOptions(quiet=True))
    config = json.loads((last / "config.json").read_text())
    assert config["num_hidden_layers"] == 2  # K+1 blocks of the base's 2 (layer 1): kept whole here
    assert not (last / "adapter_config.json").exists()
    meta = NLAMeta.load(last)
    assert meta.adapter.kind == "full" and meta.ar.head_bias is True
    ar = ActivationReconstructor.from_pretrained(last)
    assert ar.head.bias is not None and ar.head.bias.abs().sum() > 0  # trained away from zero
    assert not torch.equal(ar.head.weight, torch.eye(meta.d_model))


def test_ar_meta_carries_the_tokens_the_reference_config_reads(tmp_path, train_base, sft_table):
    """The reference's config loader reads `tokens.injection_*` and the actor template from every model
    sidecar, the AR's included; checked here as it checks them, against the live tokenizer."""
    import yaml
    from transformers import AutoTokenizer

    data, _, _ = sft_table
    recipe = make_recipe(
        train_base, tmp_path / "run", ar={**AR, "steps": 1, "checkpoint_every": 1, "data": str(data)}
    )
    last = train_ar(recipe, RunOptions(quiet=True))
    top = yaml.safe_load((last / "nla_meta.yaml").read_text())
    t, tok = top["tokens"], AutoTokenizer.from_pretrained(train_base)
    assert tok.encode(t["injection_char"], add_special_tokens=False) == [t["injection_token_id"]]
    content = top["prompt_templates"]["av"].format(injection_char=t["injection_char"])
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    p = ids.index(t["injection_token_id"])
    assert (ids[p - 1], ids[p + 1]) == (t["injection_left_neighbor_id"], t["injection_right_neighbor_id"])
    assert top["extraction"]["injection_scale"] is None and top["role"] == "ar"
    suffix = top["prompt_templates"]["ar"].split("{explanation}")[1]
    assert t["critic_suffix_ids"] == tok(suffix, add_special_tokens=False)["input_ids"][1:]
