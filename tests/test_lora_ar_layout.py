"""The LoRA-AR layout (``ar_lora_value_head.safetensors`` + ``ar_meta.json``) read as its public writer
writes it: rsLoRA on/off, final norm stripped/kept/unrecorded, a tokenizer that adds BOS or not, base
model from the caller or from the pair's AV; vectors checked against the writer's own forward."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from lora_ar_writer import AR_TEMPLATE, build_critic, write_lora_ar, writer_predict
from tokenizers import processors
from transformers import AutoModelForCausalLM

from hubkit import ActivationReconstructor, NLAMeta
from hubkit.errors import CheckpointError
from hubkit.testing import BOS

LAYER = 2
TEXTS = ["a cat on a mat", "", "Paris is the capital of France.", "code {} [] ()", "a <b>."]


@pytest.fixture(scope="module")
def normed_base(tmp_path_factory, tiny_llama):
    """The tiny base with a non-unit final-norm weight, so keeping or stripping the norm matters."""
    folder = tiny_llama.save(tmp_path_factory.mktemp("normed-base"))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model.model.norm.weight.copy_(1.0 + 0.8 * torch.randn(model.model.norm.weight.shape, generator=g))
    model.save_pretrained(str(folder))
    return folder


def _bos_tokenizer(tok):
    """A copy of `tok` whose own settings add BOS (``add_special_tokens=True`` prepends it)."""
    import copy

    t = copy.deepcopy(tok)
    t._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, t.bos_token_id)]
    )
    assert t("x")["input_ids"][0] == t.bos_token_id
    return t


@pytest.mark.parametrize(
    ("rslora", "stripped", "bos"),
    [(True, True, False), (False, True, False), (True, False, False), (True, None, True), (True, True, True)],
)
def test_reads_as_the_writer_writes(tmp_path, tiny_llama, normed_base, rslora, stripped, bos):
    tok = _bos_tokenizer(tiny_llama.tokenizer) if bos else tiny_llama.tokenizer
    critic = build_critic(normed_base, LAYER + 1, stripped=bool(stripped), rslora=rslora, seed=3)
    folder = write_lora_ar(tmp_path / "ar", critic, tok, LAYER + 1, stripped)
    if not rslora:  # the writer always uses rsLoRA; a file that says otherwise is read as it says
        meta = json.loads((folder / "ar_meta.json").read_text())
        (folder / "ar_meta.json").write_text(json.dumps({**meta, "use_rslora": False}))
    meta = NLAMeta.load(folder)
    assert meta.adapter.rslora is rslora and meta.ar.final_norm is (not stripped) and meta.ar.add_bos is False
    assert meta.base_model == "" and meta.layer == LAYER
    ar = ActivationReconstructor.from_pretrained(folder, base_model=str(normed_base), dtype="float32")
    got = ar.reconstruct(TEXTS, batch_size=2)
    want = writer_predict(critic, tok, TEXTS, math.sqrt(tiny_llama.d_model))
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    # each writer choice changes the vector: the test could fail if one were ignored
    other = build_critic(normed_base, LAYER + 1, stripped=not stripped, rslora=not rslora, seed=3)
    assert (writer_predict(other, tok, TEXTS, math.sqrt(tiny_llama.d_model)) - want).abs().max() > 1e-2


def test_sidecar_beside_it_and_base_from_the_av(tmp_path, tiny_llama, normed_base):
    """The writer copies the run's dataset sidecar in as nla_meta.yaml; its template and mse_scale apply."""
    critic = build_critic(normed_base, LAYER + 1, stripped=True, rslora=True, seed=5)
    folder = write_lora_ar(tmp_path / "ar", critic, tiny_llama.tokenizer, LAYER + 1, True)
    sidecar = {
        "kind": "nla_dataset",
        "schema_version": 2,
        "extraction": {
            "base_model": str(normed_base),
            "d_model": tiny_llama.d_model,
            "layer_index": LAYER,
            "mse_scale": 3.0,
        },
        "prompt_templates": {"critic": AR_TEMPLATE, "actor": "Explain {injection_char} now."},
    }
    (folder / "nla_meta.yaml").write_text(yaml.safe_dump(sidecar))
    ar = ActivationReconstructor.from_pretrained(folder, dtype="float32")
    assert ar.meta.base_model == str(normed_base) and ar.meta.mse_scale == 3.0
    torch.testing.assert_close(
        ar.reconstruct(TEXTS), writer_predict(critic, tiny_llama.tokenizer, TEXTS, 3.0), atol=2e-5, rtol=2e-5
    )


def test_no_base_anywhere_is_one_clear_error(tmp_path, tiny_llama, normed_base):
    critic = build_critic(normed_base, LAYER + 1, stripped=True, rslora=True, seed=6)
    folder = write_lora_ar(tmp_path / "ar", critic, tiny_llama.tokenizer, LAYER + 1, True)
    with pytest.raises(CheckpointError, match="names no base model.*base_model="):
        ActivationReconstructor.from_pretrained(folder)


def test_target_modules_that_miss_the_file_are_refused(tmp_path, tiny_llama, normed_base):
    critic = build_critic(normed_base, LAYER + 1, stripped=True, rslora=True, seed=7)
    folder = write_lora_ar(tmp_path / "ar", critic, tiny_llama.tokenizer, LAYER + 1, True)
    meta = json.loads((folder / "ar_meta.json").read_text())
    (folder / "ar_meta.json").write_text(
        json.dumps({**meta, "target_modules": ["q_proj", "v_proj", "down_proj", "k_proj"]})
    )
    with pytest.raises(CheckpointError, match="no tensor for"):
        ActivationReconstructor.from_pretrained(folder, base_model=str(normed_base))
