"""The prompt embeddings an external engine receives are exactly what the transformers path injects."""

from __future__ import annotations

import math

import pytest
import torch

from hubkit.testing import make_tiny_model, tiny_metas
from hubkit.verbalizer import ActivationVerbalizer


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_prompt_embeddings_by_hand(arch):
    tiny = make_tiny_model(arch)
    av = ActivationVerbalizer(tiny.model, tiny.tokenizer, tiny_metas(tiny, chat=arch != "gemma3")[0])
    d = tiny.d_model
    v = torch.randn(3, d)
    got = av.prompt_embeddings(v)
    ids = torch.tensor(av.prompt_ids)
    weight = tiny.model.get_input_embeddings().weight.detach()
    scale = math.sqrt(d) if arch == "gemma3" else 1.0  # Gemma multiplies embeddings by sqrt(d)
    pos = ids.tolist().index(av.meta.injection.marker_token_id)
    assert len(got) == 3
    for row, vec in zip(got, v):
        want = weight[ids].float() * scale
        want[pos] = vec * math.sqrt(d) / vec.norm()  # meta scale sqrt_d_model, after the model's scaling
        assert row.shape == (len(ids), d)
        torch.testing.assert_close(row, want, rtol=1e-5, atol=1e-5)


def test_prompt_embeddings_match_the_injection_hook(tiny_llama):
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, tiny_metas(tiny_llama)[0])
    v = torch.randn(4, tiny_llama.d_model)
    seen = []
    handle = tiny_llama.model.get_input_embeddings().register_forward_hook(lambda m, a, o: seen.append(o))
    try:
        from hubkit import arch, injection

        ids = torch.tensor([av.prompt_ids] * 4)
        p = injection.plan(av.meta.injection, ids, v, av.meta.d_model)
        with torch.no_grad(), injection.injected(tiny_llama.model, av.meta.injection, p):
            hooked = tiny_llama.model(input_ids=ids).logits
    finally:
        handle.remove()
    emb = torch.stack(av.prompt_embeddings(v))
    with torch.no_grad():
        direct = tiny_llama.model(inputs_embeds=emb).logits
    assert not torch.equal(emb, seen[0])  # the hook rewrote the marker row after the module ran
    assert arch.text_model(tiny_llama.model).embed_tokens is tiny_llama.model.get_input_embeddings()
    torch.testing.assert_close(direct, hooked, rtol=1e-5, atol=1e-5)


def test_generation_from_prompt_embeddings_equals_explain(tiny_llama):
    """Greedy tokens from ``generate(inputs_embeds=prompt_embeddings)`` equal the hook path's, row by row."""
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, tiny_metas(tiny_llama)[0])
    v = torch.randn(5, tiny_llama.d_model)
    ref = av.explain_detailed(v, batch_size=5, max_new_tokens=12)
    eos = tiny_llama.tokenizer.eos_token_id
    for e, emb in zip(ref, av.prompt_embeddings(v)):
        with torch.no_grad():
            seq = tiny_llama.model.generate(
                inputs_embeds=emb[None],
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos,
            )[0].tolist()
        n = seq.index(eos) if eos in seq else len(seq)
        assert tiny_llama.tokenizer.decode(seq[:n], skip_special_tokens=True) == e.raw
        assert n == e.n_tokens


def test_residual_add_has_no_prompt_embeddings(tiny_llama):
    from hubkit.errors import EngineError

    meta = tiny_metas(tiny_llama, scheme="residual_add")[0]
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, meta)
    with pytest.raises(EngineError, match="residual_add.*transformers engine"):
        av.prompt_embeddings(torch.randn(1, tiny_llama.d_model))
