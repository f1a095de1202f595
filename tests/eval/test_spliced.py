"""Spliced loss against an independent computation: the model's own forward and cached incremental decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hubkit import arch
from hubkit.errors import DataError
from hubkit.eval.spliced import (
    TARGET_NEXT,
    TARGET_OWN,
    recovered,
    rescale_to,
    spliced_logprobs,
    spliced_rows,
    summarize_spliced,
)
from hubkit.testing import make_tiny_model

LAYER = 1


@pytest.fixture(scope="module")
def tiny4():
    return make_tiny_model("llama", d_model=32, n_layers=3, seed=3)


def _ids(tiny, text):
    return [tiny.tokenizer.bos_token_id, *tiny.tokenizer(text, add_special_tokens=False)["input_ids"]]


@torch.no_grad()
def _incremental(model, ids, p, value):
    """Log-probs at position p with block LAYER's output there replaced by `value`, computed by decoding
    token p alone on top of the KV cache of ids[:p] (a different code path: no padding, cached attention)."""
    layers = arch.decoder_layers(model)

    def hook(_m, _a, out):
        h = (out[0] if isinstance(out, tuple) else out).clone()
        h[0, -1] = value
        return (h, *out[1:]) if isinstance(out, tuple) else h

    past = model(input_ids=torch.tensor([ids[:p]]), use_cache=True).past_key_values
    handle = layers[LAYER].register_forward_hook(hook)
    try:
        out = model(input_ids=torch.tensor([[ids[p]]]), past_key_values=past, use_cache=True)
    finally:
        handle.remove()
    return torch.log_softmax(out.logits[0, -1].float(), -1).double()


def test_original_splice_is_the_plain_forward(tiny4):
    model = tiny4.model
    ids = _ids(tiny4, "The cat sat on the mat and looked at the door.")
    positions = [1, 4, len(ids) - 1]
    h = arch.hidden_at_block(model, LAYER, input_ids=torch.tensor([ids]))[0]
    lp = spliced_logprobs(model, LAYER, [ids] * 3, positions, h[positions])
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, positions].float(), -1)
    assert torch.allclose(lp, ref, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.past_key_values. is deprecated")
def test_rows_match_incremental_decoding_and_formulas(tiny4):
    model = tiny4.model
    texts = ["The cat sat on the mat.", "Paris is the capital of France. Rivers flow to the sea.", "1 2 3 4"]
    seqs = [_ids(tiny4, t) for t in texts]
    positions = [3, 9, 2]
    orig = torch.stack(
        [
            arch.hidden_at_block(model, LAYER, input_ids=torch.tensor([s]))[0, p]
            for s, p in zip(seqs, positions)
        ]
    ).float()
    g = torch.Generator().manual_seed(0)
    recon = orig + torch.randn(orig.shape, generator=g) * orig.norm(dim=-1, keepdim=True) * 0.2
    mean = torch.randn(orig.shape[1], generator=g) * 0.1
    nxt = [seqs[0][4], seqs[1][10], None]  # the last row scores against the original's own distribution
    rows = spliced_rows(model, LAYER, seqs, positions, orig, recon, mean, next_tokens=nxt, batch_size=2)
    assert rows.targets == [TARGET_NEXT, TARGET_NEXT, TARGET_OWN]
    scaled = rescale_to(recon, orig)
    assert torch.allclose(scaled.norm(dim=-1), orig.norm(dim=-1), rtol=1e-5)
    for i, (s, p) in enumerate(zip(seqs, positions)):
        lo = _incremental(model, s, p, orig[i])
        values = {
            "original": orig[i],
            "reconstruction": scaled[i],
            "mean": mean,
            "zero": torch.zeros_like(mean),
        }
        for c, val in values.items():
            lx = _incremental(model, s, p, val)
            want = -lx[nxt[i]] if nxt[i] is not None else -(lo.exp() * lx).sum()
            assert rows.ce[c][i] == pytest.approx(float(want), abs=1e-4), (c, i)
            if c != "original":
                assert rows.kl[c][i] == pytest.approx(float((lo.exp() * (lo - lx)).sum()), abs=1e-4)
    # the own-distribution row: CE(original) is the entropy, CE(x) − CE(original) is KL(original ‖ x)
    assert rows.ce["reconstruction"][2] - rows.ce["original"][2] == pytest.approx(
        rows.kl["reconstruction"][2], abs=1e-9
    )
    sl = summarize_spliced(rows, LAYER, "test", n_boot=200)
    o, r, m = rows.ce["original"], rows.ce["reconstruction"], rows.ce["mean"]
    assert sl.frac_recovered == pytest.approx((m.mean() - r.mean()) / (m.mean() - o.mean()))
    assert sl.ce_original.mean == pytest.approx(o.mean())
    assert sl.frac_recovered_ci_low <= sl.frac_recovered_ci_high
    assert "rows" not in sl.to_dict()


def test_recovered_is_one_for_the_original_and_zero_for_the_mean():
    o, m = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    assert recovered(o, o, m) == 1.0
    assert recovered(o, m, m) == 0.0
    assert recovered(o, o, o) is None


def test_refuses_mismatched_inputs(tiny4):
    ids = _ids(tiny4, "The cat")
    v = torch.ones(1, 32)
    with pytest.raises(DataError, match="outside a sequence"):
        spliced_rows(tiny4.model, LAYER, [ids], [len(ids)], v, v, v[0])
    with pytest.raises(DataError, match="must be as many"):
        spliced_rows(tiny4.model, LAYER, [ids, ids], [0], v, v, v[0])
