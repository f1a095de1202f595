"""Export a checkpoint to the reference layout: what the reference client and critic, SGLang and
``vllm serve`` load without hubkit.

- **AV**: full merged weights + tokenizer + ``nla_meta.yaml`` (the reference keys, hubkit's record
  under ``hubkit:``). Only what the reference can express is exported: embedding replacement at a
  numeric scale, chat-wrapped template.
- **AR**: the backbone truncated to its K+1 blocks (``config.json`` says so; the base's final norm is
  kept in the files, the reference replaces it by identity at load) + ``value_head.safetensors`` +
  a tokenizer whose own ``add_special_tokens=True`` reproduces the AR's BOS rule.

A LoRA adapter is merged once, in the training dtype (the meta's ``training.dtype``, else float32).
Before the folder is moved into place, the export is loaded back and its outputs compared with the
adapter's on the same inputs (AV: logits of the injected prompt and greedy tokens; AR: the head's
vectors): a difference above the dtype's tolerance refuses the export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from hubkit import arch, heads, hub, identity, loading
from hubkit import constants as C
from hubkit.errors import CheckpointError, MetaError
from hubkit.lora_state import attach_lora_state
from hubkit.meta import Adapter, NLAMeta
from hubkit.reconstructor import ActivationReconstructor, build_ar_ids, render_ar_prompt
from hubkit.verbalizer import ActivationVerbalizer

log = logging.getLogger(__name__)

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}
"""Largest relative difference (max |exported − adapter| / max |adapter|) accepted per merge dtype."""
PROBE_TEXTS = ("", "a cat sat on the mat.", "Paris is the capital of France", "x = f(y) + 1; </text>")
PROBE_ROWS, PROBE_TOKENS, PROBE_SEED = 4, 8, 0


@dataclass
class ExportReport:
    """What an export wrote and how closely it reproduces the checkpoint it came from."""

    role: str
    out: Path
    dtype: str
    max_rel_diff: float
    tolerance: float
    greedy_equal: tuple[int, int] | None = None  # AV: rows whose greedy tokens are the same
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        greedy = (
            f", greedy tokens equal on {self.greedy_equal[0]}/{self.greedy_equal[1]} rows"
            if self.greedy_equal
            else ""
        )
        return (
            f"{self.role.upper()} exported to {self.out} (reference layout, merged in {self.dtype}): max relative "
            f"difference to the checkpoint {self.max_rel_diff:.2e} (tolerance {self.tolerance:.0e}){greedy}"
        )


def export_reference(
    checkpoint: str | Path,
    out: str | Path,
    base_model: str | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    subfolder: str | None = None,
) -> ExportReport:
    """Write `checkpoint` (a folder or repo id) in the reference layout to `out` (a new or empty folder)."""
    folder = hub.resolve(checkpoint, revision=revision, subfolder=subfolder)
    meta = NLAMeta.load(folder)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(f"{out}: exists and is not empty; choose a new --out folder")
    dt = loading.parse_dtype(dtype) or loading.parse_dtype(meta.training.dtype) or torch.float32
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        export = _export_av if meta.role == "av" else _export_ar
        report = export(folder, meta, tmp, base_model, dt)
        if out.exists():
            out.rmdir()  # refuses a folder filled since the check above: nothing of the user's is deleted
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.out = out
    log.info("%s", report.summary())
    return report


# -- loading the checkpoint as it computes ----------------------------------------------------------
def _load(folder: Path, meta: NLAMeta, base_model: str | None, dt: torch.dtype):
    """(model, tokenizer, adapter name or None) of a checkpoint, adapters attached, not merged."""
    if meta.adapter.quant != "none":
        raise CheckpointError(
            f"{folder}: a LoRA over a {meta.adapter.quant} base: merging it into full weights changes what it "
            "computes (the adapter was trained against the quantised weights); export needs a full-precision base"
        )
    lora_state: dict = {}
    if meta.role == "ar" and meta.ar.head_format == "ar_lora_value_head":
        _, lora_state = heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
    if not loading.is_adapter(folder) and not lora_state:
        return loading.load_causal_lm(str(folder), dt), loading.load_tokenizer(folder, base_model), None
    name = base_model or meta.base_model
    if not name:
        raise CheckpointError(f"{folder}: an adapter whose meta names no base model; pass --base-model")
    base = loading.resolve_base(name)
    model = loading.load_causal_lm(base, dt)
    kept = meta.ar.num_layers if meta.role == "ar" else None
    if loading.is_adapter(folder):
        model = loading.attach_adapter(model, folder, meta.role, kept_blocks=kept)
    else:
        model = attach_lora_state(model, meta, lora_state, folder)
    return model, loading.load_tokenizer(folder, base), meta.role


def _merge(model: nn.Module) -> nn.Module:
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def _check(what: str, got: Tensor, want: Tensor, dt: torch.dtype) -> float:
    """The relative difference of `got` to `want`, refused above the dtype's tolerance."""
    got, want = got.float().cpu(), want.float().cpu()
    diff = float("inf")
    if torch.isfinite(got).all() and torch.isfinite(want).all():
        diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    tol = TOLERANCE[dt]
    if not diff <= tol:
        raise CheckpointError(
            f"the exported {what} differs from the checkpoint by {diff:.3e} (relative; tolerance {tol:.0e} in "
            f"{dt}); nothing was written. Export in float32 (--dtype float32) or check the adapter"
        )
    return diff


def _public_meta(meta: NLAMeta, **changes) -> NLAMeta:
    base = identity.public_base(meta.base_model) or ""
    return meta.with_updates(adapter=Adapter(kind="full"), base_model=base, converted_from=None, **changes)


# -- AV -------------------------------------------------------------------------------------------
def _refuse_av(meta: NLAMeta, folder: Path) -> None:
    inj, av = meta.injection, meta.av
    if inj.scheme != "embedding_replace":
        raise MetaError(
            f"{folder}: injection scheme {inj.scheme!r}: the reference layout injects by embedding replacement only"
        )
    if meta.injection_scale_value() is None:
        raise MetaError(f"{folder}: no numeric injection scale; the reference client needs one")
    if not av.chat_template:
        raise MetaError(
            f"{folder}: the AV prompt is not chat-wrapped; the reference client always applies the chat template"
        )


@torch.no_grad()
def _av_outputs(av: ActivationVerbalizer, vectors: Tensor) -> tuple[Tensor, Tensor, list[str]]:
    embeds = torch.stack(av.prompt_embeddings(vectors))
    with loading.active_adapter(av.model, av.adapter_name):
        logits = av.model(inputs_embeds=embeds.to(loading.model_device(av.model))).logits
    raws = [e.raw for e in av.explain_detailed(vectors, max_new_tokens=PROBE_TOKENS)]
    return embeds, logits, raws


def _export_av(
    folder: Path, meta: NLAMeta, tmp: Path, base_model: str | None, dt: torch.dtype
) -> ExportReport:
    _refuse_av(meta, folder)
    model, tok, name = _load(folder, meta, base_model, dt)
    av = ActivationVerbalizer(model.eval(), tok, meta, adapter_name=name)
    g = torch.Generator().manual_seed(PROBE_SEED)
    vectors = torch.randn(PROBE_ROWS, meta.d_model, generator=g)
    embeds, logits, raws = _av_outputs(av, vectors)
    _merge(av.model).save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    _public_meta(av.meta).save(tmp / C.META_FILE, tokenizer=tok)
    del av, model
    exported = ActivationVerbalizer.from_pretrained(tmp, dtype=dt)
    e_embeds, e_logits, e_raws = _av_outputs(exported, vectors)
    if not torch.equal(e_embeds.cpu(), embeds.cpu()):
        raise CheckpointError("the exported AV's injected prompt embeddings differ from the checkpoint's")
    diff = _check("AV's logits", e_logits, logits, dt)
    same = sum(a == b for a, b in zip(e_raws, raws))
    return ExportReport("av", tmp, str(dt).removeprefix("torch."), diff, TOLERANCE[dt], (same, len(raws)))


# -- AR -------------------------------------------------------------------------------------------
def _refuse_ar(meta: NLAMeta, folder: Path) -> None:
    ar = meta.ar
    if ar.head_bias:
        raise MetaError(
            f"{folder}: the AR head has a bias; the reference critic's head is Linear(d, d, bias=False)"
        )
    if ar.final_norm:
        raise MetaError(
            f"{folder}: the AR reads its vector after the base's final norm (`final_norm_stripped: false`); the "
            "reference critic always replaces the final norm by identity"
        )
    if meta.mse_scale is None:
        raise MetaError(
            f"{folder}: raw-MSE mode (mse_scale null); the reference critic needs a numeric mse_scale"
        )


def _export_ar(
    folder: Path, meta: NLAMeta, tmp: Path, base_model: str | None, dt: torch.dtype
) -> ExportReport:
    _refuse_ar(meta, folder)
    if not meta.base_model and base_model:
        meta.base_model = base_model
    model, tok, name = _load(folder, meta, base_model, dt)
    head, _ = heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
    norm = arch.final_norm(model)
    arch.truncate(model, meta.ar.num_layers)
    ar = ActivationReconstructor(model.eval(), tok, meta, head, adapter_name=name)
    want = ar.reconstruct(list(PROBE_TEXTS))
    want_ids = [build_ar_ids(tok, meta, t) for t in PROBE_TEXTS]
    merged = _merge(ar.model)
    if norm is not None:
        arch.set_final_norm(merged, norm)  # in the files; the reference replaces it by identity at load
    merged.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    did = write_bos_rule(tmp, meta.ar.add_bos, tok.bos_token, tok.bos_token_id)
    heads.save_head(head, tmp)
    exported_tok = loading.load_tokenizer(tmp)
    for text, ids in zip(PROBE_TEXTS, want_ids):
        got = exported_tok(render_ar_prompt(meta.ar.template, text), add_special_tokens=True)["input_ids"]
        if got != ids:
            raise CheckpointError(
                f"the exported tokenizer gives {got[:6]}… for the AR prompt but the AR was trained on {ids[:6]}…; "
                "its BOS rule could not be written into the tokenizer"
            )
    ar_spec = replace(meta.ar, head_format="value_head", head_bias=False, add_bos="tokenizer")
    _public_meta(meta, ar=ar_spec).save(tmp / C.META_FILE, tokenizer=exported_tok)
    del ar, model, merged
    got = ActivationReconstructor.from_pretrained(tmp, dtype=dt).reconstruct(list(PROBE_TEXTS))
    diff = _check("AR's vectors", got, want, dt)
    return ExportReport("ar", tmp, str(dt).removeprefix("torch."), diff, TOLERANCE[dt], notes=[did])


# -- the AR tokenizer's BOS rule ----------------------------------------------------------------------
# The reference critic tokenizes the AR prompt with ``add_special_tokens=True``, so BOS can be expressed
# only through the tokenizer: the rule goes into ``tokenizer.json``'s post-processor (applied on load).
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def _post_processor(bos: str | None, bos_id: int | None) -> dict:
    """``tokenizer.json``'s post-processor: `bos` before each sequence, or no special token when None."""

    def seq(name: str, type_id: int) -> list[dict]:
        special = [{"SpecialToken": {"id": bos, "type_id": type_id}}] if bos is not None else []
        return [*special, {"Sequence": {"id": name, "type_id": type_id}}]

    return {
        "type": "TemplateProcessing",
        "single": seq("A", 0),
        "pair": seq("A", 0) + seq("B", 1),
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}} if bos is not None else {},
    }


def write_bos_rule(folder: Path, add_bos: bool | str, bos: str | None, bos_id: int | None) -> str:
    """Rewrite the saved tokenizer in `folder` so ``add_special_tokens=True`` follows `add_bos`; returns
    what was done (for the log). ``"tokenizer"`` leaves it as it is."""
    if add_bos == "tokenizer" or (add_bos is True and bos_id is None):
        return "tokenizer unchanged (its own rule is the AR's)"
    path = folder / TOKENIZER_JSON
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {TOKENIZER_JSON}; the AR's BOS rule can only be written into a fast tokenizer"
        )
    body = json.loads(path.read_text())
    if add_bos is True:
        body["post_processor"] = _post_processor(str(bos), int(bos_id))
        done = f"post-processor prepends {bos!r} (the AR was trained with BOS forced)"
    else:
        body["post_processor"] = _post_processor(None, None)
        cfg_path = folder / TOKENIZER_CONFIG
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        cfg["bos_token"] = None  # the reference critic asserts BOS is added whenever a bos_token is set
        cfg["add_bos_token"] = False
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        done = "post-processor adds no special tokens and bos_token cleared (the AR was trained without)"
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return done
