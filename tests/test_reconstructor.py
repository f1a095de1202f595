"""The AR prompt builder: exactly ``tokenizer(template.format(explanation=text))`` (one call, the
tokenizer's own special tokens), the explicit BOS rule, and the suffix-id consistency check.

Three tokenizers are built here in memory: a byte-level BPE that has a BOS token but does not add
it (SmolLM2/Qwen-like), the same with a post-processor that adds BOS (Llama-3-like), and a
SentencePiece-like Metaspace BPE that adds ``<s>`` (Gemma/Llama-2-like).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from hubkit.errors import MetaError
from hubkit.meta import ARSpec, NLAMeta, critic_suffix_ids
from hubkit.reconstructor import (
    BOS_AS_TOKENIZER,
    ActivationReconstructor,
    apply_bos_rule,
    build_ar_ids,
    check_suffix_ids,
)

TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"
CORPUS = [
    "Summary of the following text: <text>The cat sat.</text> <summary>",
    "Summary of the following text: <text></text> <summary>",
    "Summary of the following text: <text>a list <b>item</b></text> <summary>",
    "The end. </text> <summary> rivers flow to the sea; rain falls in spring.",
    "Paris is the capital of France and numbers like 1 2 3 appear in lists.",
]
LONG = " ".join(f"w{i % 37} and{i % 5}." for i in range(160))
TEXTS = ["", "The cat sat.", "a list <b>", " leading space", LONG]


def _byte_bpe(adds_bos: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 8, trainer=trainer)
    if adds_bos:
        bos = tok.token_to_id("<bos>")
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _sentencepiece_like() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<unk>", "<s>", "</s>", *byte_tokens], show_progress=False
    )
    tok.train_from_iterator(CORPUS * 8, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


TOKENIZERS = {
    "bytelevel_no_bos": lambda: _byte_bpe(adds_bos=False),
    "bytelevel_bos": lambda: _byte_bpe(adds_bos=True),
    "sentencepiece_bos": _sentencepiece_like,
}


@pytest.fixture(scope="module", params=sorted(TOKENIZERS))
def tok(request) -> PreTrainedTokenizerFast:
    return TOKENIZERS[request.param]()


def _meta(add_bos, suffix_ids=None, template: str = TEMPLATE) -> NLAMeta:
    ar = ARSpec(num_layers=2, template=template, add_bos=add_bos, suffix_ids=suffix_ids)
    return NLAMeta(role="ar", base_model="tiny", d_model=8, layer=1, ar=ar)


@pytest.mark.parametrize("text", TEXTS, ids=["empty", "dot", "gt", "leading_space", "long"])
def test_ids_are_the_one_call_tokenization(tok, text: str) -> None:
    want = tok(TEMPLATE.format(explanation=text))["input_ids"]  # the reference's own call
    assert build_ar_ids(tok, _meta(BOS_AS_TOKENIZER), text) == want


def test_long_text_is_really_long(tok) -> None:
    assert len(tok(LONG, add_special_tokens=False)["input_ids"]) >= 300


def test_boundary_merges_are_kept(tok) -> None:
    """Tokenizing the explanation and the suffix apart gives other ids for some text here (so the
    exact-ids test above can fail), and the builder follows the one-call tokenization."""
    prefix, suffix = TEMPLATE.split("{explanation}")
    meta = _meta(False)
    differ = 0
    for t in TEXTS:
        split = (
            tok(prefix + t, add_special_tokens=False)["input_ids"]
            + tok(suffix, add_special_tokens=False)["input_ids"]
        )
        differ += build_ar_ids(tok, meta, t) != split
    assert differ >= 1


def test_bos_only_where_the_tokenizer_adds_it(tok) -> None:
    ids = build_ar_ids(tok, _meta(BOS_AS_TOKENIZER), "x")
    adds = tok("x")["input_ids"][0] == tok.bos_token_id
    assert (ids[0] == tok.bos_token_id) == adds


@pytest.mark.parametrize("text", TEXTS[:4])
def test_forced_and_never_bos(tok, text: str) -> None:
    bare = tok(TEMPLATE.format(explanation=text), add_special_tokens=False)["input_ids"]
    assert build_ar_ids(tok, _meta(True), text) == [tok.bos_token_id, *bare]
    assert build_ar_ids(tok, _meta(False), text) == bare


def test_unknown_bos_rule_names_the_field() -> None:
    with pytest.raises(MetaError, match="ar.add_bos"):
        apply_bos_rule([1, 2], 1, "sometimes")


def test_template_with_stray_braces_names_the_field(tok) -> None:
    meta = _meta(BOS_AS_TOKENIZER, template="code {x} <text>{explanation}</text>")
    with pytest.raises(MetaError, match="ar.template"):
        build_ar_ids(tok, meta, "a")


# -- critic_suffix_ids: a consistency check, never the prompt -------------------------------------
def _reference_suffix_ids(tok) -> list[int]:
    """What reference metas record: the suffix tokenized alone, first token dropped."""
    want = tok(TEMPLATE.split("{explanation}")[-1], add_special_tokens=False)["input_ids"][1:]
    assert critic_suffix_ids(tok, TEMPLATE) == want
    return want


@pytest.mark.parametrize("text", TEXTS)
def test_reference_suffix_ids_are_the_tail_and_do_not_build_the_prompt(tok, text: str) -> None:
    suffix = _reference_suffix_ids(tok)
    meta = _meta(BOS_AS_TOKENIZER, suffix_ids=suffix)
    check_suffix_ids(tok, meta)
    ids = build_ar_ids(tok, meta, text)
    assert ids == tok(TEMPLATE.format(explanation=text))["input_ids"]
    assert ids[-len(suffix) :] == suffix


def test_suffix_ids_that_contradict_the_template_name_the_field(tok) -> None:
    wrong = [i + 1 for i in _reference_suffix_ids(tok)]
    with pytest.raises(MetaError, match=r"ar\.suffix_ids.*tokens\.critic_suffix_ids") as err:
        check_suffix_ids(tok, _meta(BOS_AS_TOKENIZER, suffix_ids=wrong), "ckpt/nla_meta.yaml")
    assert "ckpt/nla_meta.yaml" in str(err.value) and "\n" not in str(err.value)


def test_reconstructor_refuses_contradicting_suffix_ids_at_construction(tiny_llama) -> None:
    from hubkit.heads import identity_head
    from hubkit.testing import tiny_metas

    _, ar_meta = tiny_metas(tiny_llama, layer=1)
    bad = dataclasses.replace(ar_meta.ar, suffix_ids=[0, 0, 0])
    with pytest.raises(MetaError, match="suffix_ids"):
        ActivationReconstructor(
            tiny_llama.model,
            tiny_llama.tokenizer,
            ar_meta.with_updates(ar=bad),
            identity_head(tiny_llama.d_model),
        )


def test_reconstruct_reads_the_one_call_prompt(tiny_llama) -> None:
    """The AR's vector is block K's output at the last token of exactly these ids."""
    from hubkit.heads import identity_head
    from hubkit.testing import tiny_metas

    _, ar_meta = tiny_metas(tiny_llama, layer=1)
    meta = ar_meta.with_updates(ar=dataclasses.replace(ar_meta.ar, add_bos=BOS_AS_TOKENIZER))
    ar = ActivationReconstructor(
        tiny_llama.model, tiny_llama.tokenizer, meta, identity_head(tiny_llama.d_model)
    )
    texts = ["The cat sat.", "", "a list <b>"]
    got = ar.reconstruct(texts)
    for row, text in zip(got, texts):
        ids = tiny_llama.tokenizer(meta.ar.template.format(explanation=text))["input_ids"]
        with torch.no_grad():
            h = tiny_llama.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[2]
        torch.testing.assert_close(row, h[0, -1], atol=1e-5, rtol=1e-5)
