"""Every published NLA layout, built here from a tiny model with the tests' own writers, loads
through the public API; `reconstruct` matches an independent computation (a hook on block K,
the last token, the head read straight from the file) and the injection is checked at the hook."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from lora_ar_writer import build_critic, write_lora_ar, writer_predict
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hubkit import ActivationReconstructor, ActivationVerbalizer, NLAMeta, NLAPair
from hubkit.errors import CheckpointError
from hubkit.testing import MARKER, make_tiny_model

LAYER = 2
AV_TEMPLATE = "Explain the activation {injection_char} in a few words."
AR_TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"
TEXTS = ["a cat on a mat", "", "Paris is the capital of France and rivers flow.", "code {} [] ()", "a <b>"]


def _random_lora(model, seed: int):
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return peft_model


def _head_tensors(d: int, bias: bool, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"weight": torch.eye(d) + 0.05 * torch.randn(d, d, generator=g)}
    if bias:
        out["bias"] = 0.1 * torch.randn(d, generator=g)
    return out


def _token_ids(tok, prompt: str, marker: str) -> tuple[int, int, int]:
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    mid = tok(marker, add_special_tokens=False)["input_ids"][0]
    i = ids.index(mid)
    return mid, ids[i - 1], ids[i + 1]


# -- independent reference computations -------------------------------------------------------
def independent_reconstruct(
    model, tok, texts, head: dict, num_layers: int, norm_to: float | None, add_bos: bool | str = True
) -> torch.Tensor:
    """One text at a time, no padding: hook on block K, last token, optional norm, head."""
    layers = model.get_base_model().model.layers if isinstance(model, PeftModel) else model.model.layers
    captured = {}
    handle = layers[num_layers - 1].register_forward_hook(
        lambda m, a, o: captured.__setitem__("h", o[0] if isinstance(o, tuple) else o)
    )
    out = []
    try:
        for text in texts:
            # the whole prompt in one call (the reference's tokenization); BOS forced when the meta says so
            ids = tok(AR_TEMPLATE.format(explanation=text))["input_ids"]
            if add_bos is True and ids[0] != tok.bos_token_id:
                ids = [tok.bos_token_id, *ids]
            with torch.no_grad():
                model(input_ids=torch.tensor([ids]))
            h = captured["h"][0, -1].float()
            if norm_to is not None:
                h = h / h.norm() * norm_to
            v = head["weight"].float() @ h
            if "bias" in head:
                v = v + head["bias"].float()
            out.append(v)
    finally:
        handle.remove()
    return torch.stack(out)


def capture_injection(av: ActivationVerbalizer, vectors: torch.Tensor, module) -> torch.Tensor:
    """The hidden states entering decoder block `module` on the prefill forward of `av.explain`
    (our own pre-hook, so it sees whatever hubkit's hooks upstream produced)."""
    seen = []

    def hook(_m, args, kwargs):
        t = args[0] if args else kwargs["hidden_states"]
        if t.shape[1] > 1:
            seen.append(t.detach().clone())

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        av.explain(vectors, max_new_tokens=2, prefix_cache=False)  # one full-prompt prefill to watch
    finally:
        handle.remove()
    assert len(seen) == 1, "exactly one prefill forward expected"
    return seen[0]


# -- layout writers (independent of hubkit's own writer) ---------------------------------------
def write_reference(root: Path, tiny) -> tuple[Path, Path, dict]:
    """Reference release: full AV weights; AR = truncated HF backbone + value_head.safetensors."""
    tok, d = tiny.tokenizer, tiny.d_model
    chat_prompt = tok.apply_chat_template(
        [{"role": "user", "content": AV_TEMPLATE.replace("{injection_char}", MARKER)}],
        tokenize=False,
        add_generation_prompt=True,
    )
    mid, left, right = _token_ids(tok, chat_prompt, MARKER)
    common = {
        "kind": "nla_model",
        "schema_version": 2,
        "d_model": d,
        "extraction": {"injection_scale": 12.0, "mse_scale": "sqrt_d_model"},
        "tokens": {
            "injection_char": MARKER,
            "injection_token_id": mid,
            "injection_left_neighbor_id": left,
            "injection_right_neighbor_id": right,
        },
        "prompt_templates": {"actor": AV_TEMPLATE, "critic": AR_TEMPLATE},
        "critic": {"extraction_layer_index": LAYER},
        "base_checkpoint": "tiny/llama",
    }
    av_dir, ar_dir = root / "ref-av", root / "ref-ar"
    tiny.save(av_dir)
    (av_dir / "nla_meta.yaml").write_text(yaml.safe_dump({**common, "role": "actor"}))
    backbone = AutoModelForCausalLM.from_pretrained(str(av_dir))
    backbone.model.layers = backbone.model.layers[: LAYER + 1]
    backbone.config.num_hidden_layers = LAYER + 1
    backbone.save_pretrained(str(ar_dir))
    tok.save_pretrained(str(ar_dir))
    head = _head_tensors(d, bias=False, seed=1)
    save_file(head, str(ar_dir / "value_head.safetensors"))
    (ar_dir / "nla_meta.yaml").write_text(yaml.safe_dump({**common, "role": "critic"}))
    return av_dir, ar_dir, head


def write_consumer(root: Path, tiny, base_dir: Path) -> tuple[Path, Path, dict]:
    """Consumer-GPU release: AV LoRA + raw template (no public writer found: the keys the published
    files carry); AR = the LoRA-AR layout as its public writer writes it."""
    tok, d = tiny.tokenizer, tiny.d_model
    prompt = AV_TEMPLATE.replace("{injection_char}", MARKER)
    mid, left, right = _token_ids(tok, prompt, MARKER)
    av_dir, ar_dir = root / "cg-av", root / "cg-ar"
    av = _random_lora(AutoModelForCausalLM.from_pretrained(str(base_dir)), seed=2)
    av.save_pretrained(str(av_dir))
    meta = {
        "kind": "nla_model",
        "role": "actor",
        "base_model": str(base_dir),
        "extraction": {
            "d_model": d,
            "layer": LAYER,
            "injection_scale": "sqrt_d_model",
            "mse_scale": "sqrt_d_model",
        },
        "tokens": {
            "injection_token_id": mid,
            "injection_left_neighbor_id": left,
            "injection_right_neighbor_id": right,
        },
        "prompt_template": AV_TEMPLATE,
        "av_lora": {"r": 4, "alpha": 8, "target_modules_regex": ".*(q_proj|v_proj)"},
        "training": {
            "lr": 1e-4,
            "steps_completed": 300,
            "loss_at_step_300": 1.2,
            "micro_batch": 2,
            "grad_accum": 8,
        },
        "training_data": {"path": "x.parquet", "n_rows": 10, "source": "corpus", "labelers": ["m"]},
        "notes": "free text",
    }
    (av_dir / "nla_meta.yaml").write_text(yaml.safe_dump(meta))
    # The AR as its public writer (asherps/EasyNLA nla/train_sft.py) writes it: tests/lora_ar_writer.py
    critic = build_critic(base_dir, LAYER + 1, stripped=True, rslora=True, seed=3)
    write_lora_ar(ar_dir, critic, tok, LAYER + 1, stripped=True)
    return av_dir, ar_dir, {"critic": critic}


def write_residual(root: Path, tiny, base_dir: Path) -> tuple[Path, Path, dict]:
    """Residual-add variant: LoRA adapters, the dataset sidecar as meta, AR head in linear_head.pt."""
    d = tiny.d_model
    sidecar = {
        "kind": "nla_dataset",
        "extraction": {
            "base_model": str(base_dir),
            "d_model": d,
            "layer_index": LAYER,
            "corpus": "fineweb",
            "positions_per_doc": 4,
        },
        "git_commit": "abc",
    }
    av_dir, ar_dir = root / "ra-av", root / "ra-ar"
    _random_lora(AutoModelForCausalLM.from_pretrained(str(base_dir)), seed=5).save_pretrained(str(av_dir))
    ar = _random_lora(AutoModelForCausalLM.from_pretrained(str(base_dir)), seed=6)
    ar.save_pretrained(str(ar_dir))
    head = _head_tensors(d, bias=True, seed=7)
    torch.save(head, str(ar_dir / "linear_head.pt"))
    for folder in (av_dir, ar_dir):
        (folder / "nla_meta.yaml").write_text(yaml.safe_dump(sidecar))
    return av_dir, ar_dir, {"head": head}


# -- tests ------------------------------------------------------------------------------------
def test_reference_layout(tmp_path, tiny_llama):
    av_dir, ar_dir, head = write_reference(tmp_path, tiny_llama)
    ar = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    assert ar.meta.ar.num_layers == LAYER + 1 and ar.meta.ar.head_format == "value_head"
    got = ar.reconstruct(TEXTS, batch_size=3)
    ref_model = AutoModelForCausalLM.from_pretrained(str(av_dir))  # untruncated base: hook on block K
    want = independent_reconstruct(
        ref_model, tiny_llama.tokenizer, TEXTS, head, LAYER + 1, None, add_bos=ar.meta.ar.add_bos
    )
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    av = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    v = torch.randn(3, tiny_llama.d_model)
    embeds = capture_injection(av, v, av.model.model.layers[0])
    ids = torch.tensor(av.prompt_ids)
    pos = int((ids == av.meta.injection.marker_token_id).nonzero()[0])
    torch.testing.assert_close(embeds[:, pos], v * (12.0 / v.norm(dim=-1, keepdim=True)))
    own = av.model.model.embed_tokens.weight[ids]
    mask = torch.arange(len(ids)) != pos
    torch.testing.assert_close(embeds[0, mask], own[mask])


def test_consumer_layout(tmp_path, tiny_llama, tiny_base_dir):
    av_dir, ar_dir, extra = write_consumer(tmp_path, tiny_llama, tiny_base_dir)
    meta = NLAMeta.load(ar_dir)
    assert meta.ar.head_format == "ar_lora_value_head" and meta.ar.input_norm == "mse_scale"
    assert not meta.ar.head_bias and meta.adapter.rslora and meta.ar.add_bos is False
    ar = ActivationReconstructor.from_pretrained(ar_dir, base_model=str(tiny_base_dir), dtype="float32")
    got = ar.reconstruct(TEXTS)
    want = writer_predict(extra["critic"], tiny_llama.tokenizer, TEXTS, math.sqrt(tiny_llama.d_model))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    pair = NLAPair.from_pretrained(av_dir, ar_dir, dtype="float32")  # the AR's base: its AV's
    torch.testing.assert_close(pair.ar.reconstruct(TEXTS), want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    av = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    assert (
        not av.meta.av.chat_template
        and av.prompt_ids
        == tiny_llama.tokenizer(AV_TEMPLATE.replace("{injection_char}", MARKER))["input_ids"]
    )
    v = torch.randn(2, tiny_llama.d_model) * 7
    embeds = capture_injection(av, v, av.model.get_base_model().model.layers[0])
    pos = av.prompt_ids.index(av.meta.injection.marker_token_id)
    torch.testing.assert_close(
        embeds[:, pos], v / v.norm(dim=-1, keepdim=True) * math.sqrt(tiny_llama.d_model)
    )


def test_residual_add_layout(tmp_path, tiny_llama, tiny_base_dir):
    av_dir, ar_dir, extra = write_residual(tmp_path, tiny_llama, tiny_base_dir)
    ar = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    assert ar.meta.ar.head_format == "linear_head_pt"
    assert len(ar.model.get_base_model().model.layers) == LAYER + 1, "truncated to K+1 blocks at load"
    got = ar.reconstruct(TEXTS)
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_base_dir)), str(ar_dir))
    want = independent_reconstruct(
        lora, tiny_llama.tokenizer, TEXTS, extra["head"], LAYER + 1, None, add_bos=ar.meta.ar.add_bos
    )
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    av = ActivationVerbalizer.from_pretrained(av_dir, dtype="float32")
    assert av.meta.injection.scheme == "residual_add"
    layers = av.model.get_base_model().model.layers
    v = torch.randn(2, tiny_llama.d_model)
    injected_out = capture_injection(av, v, layers[2])
    ids = torch.tensor([av.prompt_ids] * 2)
    plain = []
    handle = layers[1].register_forward_hook(
        lambda m, a, o: plain.append((o[0] if isinstance(o, tuple) else o).clone())
    )
    with torch.no_grad():
        av.model(input_ids=ids)
    handle.remove()
    pos = av.prompt_ids.index(av.meta.injection.marker_token_id)
    h = plain[0][:, pos]
    torch.testing.assert_close(
        injected_out[:, pos], h + h.norm(dim=-1, keepdim=True) * v / v.norm(dim=-1, keepdim=True)
    )
    mask = torch.arange(ids.shape[1]) != pos
    torch.testing.assert_close(injected_out[:, mask], plain[0][:, mask])


def test_gemma_embedding_scale(tmp_path):
    """Gemma multiplies embeddings by sqrt(d): the injected row has the meta's norm exactly,
    the others keep the model's own scaled embeddings."""
    from hubkit.testing import tiny_metas

    tiny = make_tiny_model("gemma3")
    av_meta, _ = tiny_metas(tiny, layer=1, scale=20.0, chat=False)
    av = ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta)
    v = torch.randn(2, tiny.d_model)
    emb_module = tiny.model.model.embed_tokens
    embeds = capture_injection(av, v, tiny.model.model.layers[0])
    ids = torch.tensor(av.prompt_ids)
    pos = av.prompt_ids.index(av.meta.injection.marker_token_id)
    torch.testing.assert_close(embeds[:, pos].norm(dim=-1), torch.full((2,), 20.0))
    mask = torch.arange(len(ids)) != pos
    scaled = emb_module.weight[ids[mask]] * math.sqrt(tiny.d_model)
    torch.testing.assert_close(embeds[0, mask], scaled.to(embeds.dtype), atol=1e-3, rtol=1e-3)


def test_pickled_code_in_head_is_refused(tmp_path, tiny_llama, tiny_base_dir):
    _, ar_dir, _ = write_residual(tmp_path, tiny_llama, tiny_base_dir)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save(
        {"weight": torch.eye(tiny_llama.d_model), "bias": torch.zeros(tiny_llama.d_model), "x": Evil()},
        str(ar_dir / "linear_head.pt"),
    )
    with pytest.raises(CheckpointError, match="refused"):
        ActivationReconstructor.from_pretrained(ar_dir)
    assert not marker.exists(), "the pickle's code ran"


def test_missing_and_misshapen_head(tmp_path, tiny_llama):
    _, ar_dir, _ = write_reference(tmp_path, tiny_llama)
    d = tiny_llama.d_model
    save_file({"weight": torch.eye(d + 1)}, str(ar_dir / "value_head.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape \(65, 65\)"):
        ActivationReconstructor.from_pretrained(ar_dir)
    (ar_dir / "value_head.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        ActivationReconstructor.from_pretrained(ar_dir)


def test_hubkit_layout_roundtrips_through_writer(tmp_path, tiny_llama, tiny_base_dir):
    """hubkit's own writer: a LoRA AR over the base, value head; loads with the same numbers."""
    from hubkit.checkpoint import write_checkpoint
    from hubkit.testing import tiny_metas

    _, ar_meta = tiny_metas(tiny_llama, layer=LAYER, base_model=str(tiny_base_dir))
    lora = _random_lora(AutoModelForCausalLM.from_pretrained(str(tiny_base_dir)), seed=9)
    head_t = _head_tensors(tiny_llama.d_model, bias=False, seed=10)
    head = torch.nn.Linear(tiny_llama.d_model, tiny_llama.d_model, bias=False)
    head.load_state_dict(head_t)
    tok = AutoTokenizer.from_pretrained(str(tiny_base_dir))
    write_checkpoint(tmp_path / "ar", lora, tok, ar_meta, head=head)
    assert set(load_file(str(tmp_path / "ar" / "value_head.safetensors"))) == {"weight"}
    ar = ActivationReconstructor.from_pretrained(tmp_path / "ar", dtype="float32")
    want = independent_reconstruct(lora, tok, TEXTS, head_t, LAYER + 1, None)
    torch.testing.assert_close(ar.reconstruct(TEXTS), want, atol=1e-4, rtol=1e-4)


def test_docs_minimal_reference_sidecars(tmp_path, tiny_llama, caplog):
    """Sidecars written as the reference's docs/inference.md shows them (no `role` on the AV, no
    `base_checkpoint`, AR depth as `ar.num_hidden_layers`) load from full-weight folders, each inference
    logged, and compute what the full sidecars compute."""
    import logging

    av_dir, ar_dir, head = write_reference(tmp_path, tiny_llama)
    full_av, full_ar = (yaml.safe_load((d / "nla_meta.yaml").read_text()) for d in (av_dir, ar_dir))
    docs_av = {
        "kind": "nla_model",
        "d_model": full_av["d_model"],
        "extraction": {"injection_scale": 12.0},
        "tokens": full_av["tokens"],
        "prompt_templates": {"av": AV_TEMPLATE},
    }
    docs_ar = {
        "kind": "nla_model",
        "role": "ar",
        "d_model": full_ar["d_model"],
        "extraction": {"mse_scale": math.sqrt(tiny_llama.d_model)},
        "ar": {"num_hidden_layers": LAYER},
        "tokens": {
            "critic_suffix_ids": tiny_llama.tokenizer("</text> <summary>", add_special_tokens=False)[
                "input_ids"
            ][1:]
        },
        "prompt_templates": {"ar": AR_TEMPLATE},
    }
    (av_dir / "nla_meta.yaml").write_text(yaml.safe_dump(docs_av))
    (ar_dir / "nla_meta.yaml").write_text(yaml.safe_dump(docs_ar))
    caplog.set_level(logging.INFO, logger="hubkit.meta")
    pair = NLAPair.from_pretrained(av_dir, ar_dir, dtype="float32")
    assert pair.av.meta.role == "av" and pair.av.meta.layer == LAYER and pair.ar.meta.base_model == ""
    said = [r.getMessage() for r in caplog.records if "defaults applied" in r.getMessage()]
    assert any("role → av" in m and "base_model → none" in m for m in said), said
    assert any("base_model → none" in m for m in said if "ref-ar" in m), said
    ref_model = AutoModelForCausalLM.from_pretrained(str(av_dir))
    want = independent_reconstruct(
        ref_model, tiny_llama.tokenizer, TEXTS, head, LAYER + 1, None, add_bos="tokenizer"
    )
    torch.testing.assert_close(pair.ar.reconstruct(TEXTS), want, atol=1e-4, rtol=1e-4)
    critic_like = yaml.safe_load((ar_dir / "nla_meta.yaml").read_text())
    critic_like.pop("role")  # no role either: the value head in the folder makes it an AR
    (ar_dir / "nla_meta.yaml").write_text(yaml.safe_dump(critic_like))
    assert NLAMeta.load(ar_dir).role == "ar"
