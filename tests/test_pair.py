"""AV batching, the AR's padded batches, and the pair: one shared base, round-trip numbers."""

from __future__ import annotations

import pytest
import torch

from hubkit import ActivationReconstructor, ActivationVerbalizer, NLAPair
from hubkit.errors import IncompatiblePairError, InjectionError
from hubkit.heads import identity_head
from hubkit.testing import make_tiny_model, tiny_metas, write_adapter_pair
from hubkit.verbalizer import parse_explanation


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "gemma4"])
def test_batched_explain_equals_per_row(arch):
    tiny = make_tiny_model(arch)
    av_meta, _ = tiny_metas(tiny, chat=arch != "gemma3")
    av = ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta)
    v = torch.randn(5, tiny.d_model)
    batched = av.explain_detailed(v, batch_size=5, max_new_tokens=10)
    single = [av.explain_detailed(v[i : i + 1], max_new_tokens=10)[0] for i in range(5)]
    assert [b.raw for b in batched] == [s.raw for s in single]
    assert len({b.raw for b in batched}) > 1, "different vectors should steer a random model differently"


def test_ar_padded_batch_equals_single_rows(tiny_llama):
    _, ar_meta = tiny_metas(tiny_llama, layer=2)
    head = identity_head(tiny_llama.d_model)
    ar = ActivationReconstructor(tiny_llama.model, tiny_llama.tokenizer, ar_meta, head)
    texts = ["short", "a much longer explanation with many words in it to pad the others", ""]
    batched = ar.reconstruct(texts, batch_size=3)
    single = torch.cat([ar.reconstruct([t]) for t in texts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_parse_explanation_flags_failures():
    assert parse_explanation("<explanation> cats </explanation> tail", "<explanation>", "</explanation>") == (
        "cats",
        "ok",
    )
    assert parse_explanation("no tags here", "<explanation>", "</explanation>") == ("no tags here", "no_tags")
    assert parse_explanation("<explanation>cut off", "<explanation>", "</explanation>") == (
        "cut off",
        "unclosed",
    )
    assert parse_explanation("<explanation> </explanation>", "<explanation>", "</explanation>") == (
        "",
        "empty",
    )
    assert parse_explanation("   ", "<explanation>", "</explanation>") == ("", "empty")


def test_pair_shares_one_base_and_matches_separate_halves(tmp_path, tiny_base_dir, tiny_llama):
    av_dir, ar_dir = write_adapter_pair(tmp_path, tiny_base_dir)
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, dtype="float32")
    assert pair.shared_base
    av = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    ar = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    v = torch.randn(4, tiny_llama.d_model)
    res = pair.round_trip(v, max_new_tokens=12)
    assert res.explanations == av.explain(v, max_new_tokens=12)
    torch.testing.assert_close(res.reconstructions, ar.reconstruct(res.explanations), atol=1e-5, rtol=1e-5)
    # independent cos / normalised MSE
    cos = (v @ res.reconstructions.T).diag() / (v.norm(dim=1) * res.reconstructions.norm(dim=1))
    torch.testing.assert_close(res.cos, cos, atol=1e-5, rtol=1e-5)
    d = v.shape[1]
    a = v / v.norm(dim=1, keepdim=True) * d**0.5
    b = res.reconstructions / res.reconstructions.norm(dim=1, keepdim=True) * d**0.5
    torch.testing.assert_close(res.mse, ((a - b) ** 2).mean(dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.mse, 2 * (1 - res.cos), atol=1e-5, rtol=1e-5)


def test_pair_refuses_mismatched_halves(tmp_path, tiny_base_dir, tiny_llama):
    av_dir, ar_dir = write_adapter_pair(tmp_path, tiny_base_dir)
    from hubkit import NLAMeta

    meta = NLAMeta.load(ar_dir)
    meta.with_updates(layer=1).save(ar_dir)
    with pytest.raises(IncompatiblePairError, match="layer"):
        NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    meta.with_updates(d_model=32).save(ar_dir)
    with pytest.raises(IncompatiblePairError, match="d_model"):
        NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    meta.with_updates(base_model="other/model").save(ar_dir)
    with pytest.raises(IncompatiblePairError, match="base_model"):
        NLAPair.from_pretrained(av=av_dir, ar=ar_dir)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((2, 64), float("nan")), "NaN"),
        (torch.tensor([[float("inf")] * 64]), "inf"),
        (torch.zeros(3, 64), "all-zero"),
        (torch.randn(2, 63), "width 63"),
    ],
)
def test_bad_vectors_are_refused(tiny_llama, bad, match):
    av_meta, _ = tiny_metas(tiny_llama)
    av = ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, av_meta)
    with pytest.raises(InjectionError, match=match):
        av.explain(bad)


def test_template_with_two_markers_is_refused(tiny_llama):
    av_meta, _ = tiny_metas(tiny_llama)
    av_meta.av.template = "Explain ¶ and {injection_char}"  # the marker character also appears literally
    with pytest.raises(InjectionError, match="appears 2 times"):
        ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, av_meta)
