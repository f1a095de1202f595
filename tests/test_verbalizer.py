"""The AV: the shared prompt-prefix KV cache (same greedy tokens as the uncached path), where
generation stops (config ∪ generation_config EOS), `min_new_tokens`, k-marker prompts, and the
prompt embeddings handed to other engines."""

from __future__ import annotations

import pytest
import torch

from hubkit import arch
from hubkit.engines import Sampling
from hubkit.errors import EngineError, InjectionError
from hubkit.testing import make_tiny_model, tiny_metas
from hubkit.verbalizer import ActivationVerbalizer, stop_token_ids

ARCHS = ("llama", "qwen2", "gemma3", "gemma4")


@pytest.fixture(scope="module")
def tinies():
    return {a: make_tiny_model(a, d_model=64, n_layers=3) for a in ARCHS}


def _av(tiny, scheme: str = "embedding_replace", template: str | None = None) -> ActivationVerbalizer:
    av_meta, _ = tiny_metas(tiny, layer=1, chat=tiny.arch != "gemma3", scheme=scheme)
    if template is not None:
        av_meta.av.template = template  # k placeholders (the schema's own check allows one today)
    return ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta)


def _rows(av: ActivationVerbalizer, v: torch.Tensor, prefix_cache: bool, **kw) -> list[list[int]]:
    opts = dict(max_new_tokens=12, min_new_tokens=0, do_sample=False, temperature=1.0, top_p=1.0)
    return av._generate(v, Sampling(**{**opts, **kw}), prefix_cache)


def _block0_inputs(av: ActivationVerbalizer, v: torch.Tensor) -> torch.Tensor:
    """What enters decoder block 0 on the (uncached) prefill: the prompt embeddings as the model sees them."""
    seen = []

    def hook(_m, args, kwargs):
        t = args[0] if args else kwargs["hidden_states"]
        if t.shape[1] > 1:
            seen.append(t.detach().clone())

    handle = arch.decoder_layers(av.model)[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        av.explain(v, max_new_tokens=1, prefix_cache=False)
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


# -- the prompt-prefix cache ---------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["embedding_replace", "residual_add"])
@pytest.mark.parametrize("arch_name", ARCHS)
def test_prefix_cache_gives_the_uncached_tokens(tinies, arch_name: str, scheme: str) -> None:
    av = _av(tinies[arch_name], scheme=scheme)
    assert av.prefix_length() > 0, "the prompt has tokens before the marker: the cache is really used"
    v = torch.randn(5, av.meta.d_model) * 3
    cached, plain = _rows(av, v, True), _rows(av, v, False)
    assert cached == plain
    if (arch_name, scheme) != ("llama", "residual_add"):  # that tiny llama writes one text for all
        assert len({tuple(r) for r in plain}) > 1, "different vectors should steer a random model differently"


def test_prefix_cache_keeps_two_tokens_uncached(tinies) -> None:
    tiny = tinies["llama"]
    av = _av(tiny, template="Explain the activation in a few words {injection_char}.")
    ids = av.prompt_ids
    pos = ids.index(av.meta.injection.marker_token_id)
    assert av.prefix_length() == min(pos, len(ids) - 2)
    v = torch.randn(3, av.meta.d_model)
    assert _rows(av, v, True) == _rows(av, v, False)


# -- where generation stops ------------------------------------------------------------------------
def test_stop_ids_are_config_generation_config_and_tokenizer(tinies) -> None:
    tiny = make_tiny_model("llama", d_model=64, n_layers=2)
    tiny.model.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, 77]
    tiny.model.config.eos_token_id = 5
    assert stop_token_ids(tiny.model, tiny.tokenizer) == [5, tiny.tokenizer.eos_token_id, 77]


def test_generation_stops_on_a_generation_config_eos(tinies) -> None:
    tiny = make_tiny_model("llama", d_model=64, n_layers=2, seed=3)
    av = _av(tiny)
    v = torch.randn(4, av.meta.d_model)
    free = _rows(av, v, True, max_new_tokens=10)
    extra = free[0][3]  # a token the model writes at step 3 of row 0 (e.g. Gemma-3-IT's <end_of_turn>)
    assert extra not in av.stop_ids
    tiny.model.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, extra]
    av = _av(tiny)
    assert extra in av.stop_ids
    got = av.explain_detailed(v, max_new_tokens=10)
    for row, e in zip(free, got):
        cut = next((i for i, t in enumerate(row) if t in av.stop_ids), len(row))
        assert e.n_tokens == cut
        assert e.raw == tiny.tokenizer.decode(row[:cut], skip_special_tokens=True)
    assert got[0].n_tokens == free[0].index(extra) <= 3


def test_min_new_tokens_holds_the_stop_back(tinies) -> None:
    tiny = make_tiny_model("llama", d_model=64, n_layers=2, seed=3)
    av = _av(tiny)
    v = torch.randn(4, av.meta.d_model)
    first = _rows(av, v, True, max_new_tokens=3)[0][0]
    tiny.model.generation_config.eos_token_id = [tiny.tokenizer.eos_token_id, first]
    av = _av(tiny)
    assert av.explain_detailed(v[:1], max_new_tokens=8)[0].n_tokens == 0
    rows = _rows(av, v, True, max_new_tokens=8, min_new_tokens=4)
    assert all(not set(r[:4]) & set(av.stop_ids) for r in rows)
    assert all(e.n_tokens >= 4 for e in av.explain_detailed(v, max_new_tokens=8, min_new_tokens=4))


# -- k markers per prompt ----------------------------------------------------------------------------
TWO = "Take the x {injection_char} y and the x {injection_char} y in a few words."


@pytest.mark.parametrize("arch_name", ["llama", "gemma3"])
def test_two_markers_take_two_vectors_in_order(tinies, arch_name: str) -> None:
    tiny = tinies[arch_name]
    av = _av(tiny, template=TWO)
    assert av.slots == 2
    v = torch.randn(3, 2, av.meta.d_model)
    entering = _block0_inputs(av, v)
    ids = torch.tensor(av.prompt_ids)
    slots = (ids == av.meta.injection.marker_token_id).nonzero().flatten().tolist()
    assert len(slots) == 2
    scale = av.meta.injection_scale_value()
    for b in range(3):
        for j, pos in enumerate(slots):
            torch.testing.assert_close(entering[b, pos], v[b, j] * scale / v[b, j].norm(), rtol=0, atol=1e-5)
    assert _rows(av, v, True) == _rows(av, v, False)


def test_vector_count_must_match_the_markers(tinies) -> None:
    av = _av(tinies["llama"], template=TWO)
    with pytest.raises(InjectionError, match=r"2 marker\(s\)") as err:
        av.explain(torch.randn(3, av.meta.d_model))
    assert "\n" not in str(err.value)
    one = _av(tinies["llama"])
    with pytest.raises(InjectionError, match=r"1 marker\(s\)"):
        one.explain(torch.randn(3, 2, one.meta.d_model))


# -- prompt embeddings and other engines ---------------------------------------------------------------
@pytest.mark.parametrize("arch_name", ["llama", "gemma3", "gemma4"])
def test_prompt_embeddings_are_what_the_model_is_fed(tinies, arch_name: str) -> None:
    av = _av(tinies[arch_name])
    v = torch.randn(3, av.meta.d_model)
    embeds = av.prompt_embeddings(v)
    assert [tuple(e.shape) for e in embeds] == [(len(av.prompt_ids), av.meta.d_model)] * 3
    torch.testing.assert_close(torch.stack(embeds), _block0_inputs(av, v), rtol=0, atol=0)


def test_prompt_embeddings_refuse_residual_add(tinies) -> None:
    av = _av(tinies["llama"], scheme="residual_add")
    with pytest.raises(EngineError, match="transformers engine"):
        av.prompt_embeddings(torch.randn(2, av.meta.d_model))
