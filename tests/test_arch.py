"""Base families keyed by config.model_type: where the decoder, its blocks and its final norm live,
and the embedding scale the family applies, checked on tiny models of each family."""

from __future__ import annotations

import math

import pytest
import torch

from hubkit import arch
from hubkit.testing import ARCHS, make_tiny_model


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request):
    return make_tiny_model(request.param, d_model=32, n_layers=3)


def test_every_tiny_family_is_in_the_table(tiny) -> None:
    fam = arch.family(tiny.model)
    assert fam is not None and fam is arch.FAMILIES[tiny.model.config.model_type]
    assert arch.num_layers(tiny.model) == 3 and arch.hidden_size(tiny.model) == 32
    want = math.sqrt(32) if fam.embed_scale == "sqrt_d_model" else 1.0
    assert arch.embedding_scale(tiny.model) == pytest.approx(want, rel=1e-6)
    ids = torch.tensor([[1, 2, 3]])
    emb = arch.text_model(tiny.model).embed_tokens
    assert torch.allclose(emb(ids), emb.weight[ids] * want, rtol=1e-5)  # the scale is applied by the module


def test_gemma_families_scale_and_multimodal_ones_nest_the_decoder(tiny) -> None:
    fam = arch.family(tiny.model)
    assert (fam.embed_scale == "sqrt_d_model") is tiny.arch.startswith("gemma")
    expected = tiny.model.model.language_model if tiny.arch == "gemma4" else tiny.model.model
    assert arch.text_model(tiny.model) is expected


def test_peft_wrapping_is_looked_through() -> None:
    from peft import LoraConfig, get_peft_model

    tiny = make_tiny_model("llama", d_model=32, n_layers=2)
    wrapped = get_peft_model(tiny.model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert arch.text_model(wrapped) is tiny.model.model and arch.num_layers(wrapped) == 2


def test_a_family_not_in_the_table_is_found_by_probing(monkeypatch) -> None:
    tiny = make_tiny_model("qwen2", d_model=32, n_layers=2)
    monkeypatch.delitem(arch.FAMILIES, "qwen2")
    assert arch.family(tiny.model) is None and arch.text_model(tiny.model) is tiny.model.model


def test_truncate_keeps_blocks_and_drops_the_final_norm() -> None:
    tiny = make_tiny_model("gemma3", d_model=32, n_layers=3)
    arch.truncate(tiny.model, 2)
    assert arch.num_layers(tiny.model) == 2 and isinstance(tiny.model.model.norm, torch.nn.Identity)
