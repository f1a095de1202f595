"""The injection-scale lint: is a scale in the range the AV's base has ever seen?

Published scales follow either the token-embedding norm (√d releases) or the residual norm at the
NLA's layer (the reference's 150 on Qwen2.5-7B, 80,000 on Gemma-3-12B), so a scale fails only when it
is `factor` × beyond both. Torch is imported by the measuring functions only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from hubkit.constants import OOD_SCALE_FACTOR

if TYPE_CHECKING:
    from torch import nn

RECIPE_SCALES = ("embedding_norm", "activation_norm")  # recipe words measured on the base


def embedding_norm(model: nn.Module, chunk: int = 32768) -> float:
    """Median L2 norm of every token's input embedding, as the embedding module outputs it (so after
    the model's own scaling, e.g. Gemma's sqrt(d)); lower median of the vocabulary's norms."""
    import torch

    from hubkit import arch  # lazy: arch imports torch, and this module is imported by light commands

    emb = arch.text_model(model).embed_tokens
    n, device = emb.weight.shape[0], emb.weight.device
    with torch.no_grad():
        ids = (torch.arange(i, min(i + chunk, n), device=device) for i in range(0, n, chunk))
        norms = [emb(chunk_ids).float().norm(dim=-1) for chunk_ids in ids]
    return float(torch.cat(norms).median())


def residual_norm(
    model: nn.Module, tokenizer: Any, layer: int, texts: list[str], max_tokens: int = 128, batch_size: int = 8
) -> float:
    """Median L2 norm of ``hidden_states[layer + 1]`` (the output of block `layer`) over the real
    (non-pad) tokens of `texts`, each tokenized as the tokenizer does by default and cut at `max_tokens`."""
    import torch

    from hubkit import arch  # lazy: arch imports torch, and this module is imported by light commands

    encoded = [tokenizer(t, truncation=True, max_length=max_tokens)["input_ids"] for t in texts]
    encoded = [torch.tensor(list(e)) for e in encoded if len(e) > 0]
    if not encoded:
        raise ValueError("residual_norm needs at least one non-empty text")
    device = next(model.parameters()).device
    norms = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        ids, mask = arch.right_padded(batch)
        ids, mask = ids.to(device), mask.to(device)
        hidden = arch.hidden_at_block(model, layer, input_ids=ids, attention_mask=mask)
        norms.append(hidden.float().norm(dim=-1)[mask.bool()].cpu())
    return float(torch.cat(norms).median())


def bundled_texts(n: int = 8) -> list[str]:
    """`n` texts spread over the bundled corpus (``hubkit/corpus/bundled.jsonl``), in file order."""
    lines = resources.files("hubkit").joinpath("corpus/bundled.jsonl").read_text().splitlines()
    rows = [json.loads(line)["text"] for line in lines if line.strip()]
    step = max(1, len(rows) // n)
    return rows[::step][:n]


LINT_TEXTS = 8  # bundled-corpus texts the residual norm is measured on


def corpus_residual_norm(model: nn.Module, tokenizer: Any, layer: int) -> float:
    """`residual_norm` at `layer` on the bundled corpus: the yardstick every scale check measures."""
    return residual_norm(model, tokenizer, layer, bundled_texts(LINT_TEXTS))


@dataclass(frozen=True)
class ScaleLint:
    """Both ratios and the verdict; `message` says it in one line."""

    scale: float | None
    embedding_norm: float
    residual_norm: float | None
    ratio_to_embedding: float | None
    ratio_to_residual: float | None
    ok: bool
    message: str
    factor: float = OOD_SCALE_FACTOR


def lint_scale(
    scale: float | None, embedding_norm: float, residual_norm: float | None, factor: float = OOD_SCALE_FACTOR
) -> ScaleLint:
    """Pass unless `scale` is over `factor`× the larger norm or under 1/`factor` of the smaller."""
    norms = [embedding_norm] + ([residual_norm] if residual_norm is not None else [])
    if scale is None:
        msg = f"no injection scale (raw vectors or a norm-matched scheme); median embedding norm {embedding_norm:.4g}"
        if residual_norm is not None:
            msg += f", median residual norm {residual_norm:.4g}"
        return ScaleLint(None, embedding_norm, residual_norm, None, None, True, msg, factor)
    r_emb = scale / embedding_norm
    r_res = None if residual_norm is None else scale / residual_norm
    msg = f"injection scale {scale:.4g} is {r_emb:.3g}× the median token-embedding norm {embedding_norm:.4g}"
    if r_res is not None:
        msg += f" and {r_res:.3g}× the median residual norm {residual_norm:.4g}"
    too_big, too_small = scale > factor * max(norms), scale < min(norms) / factor
    ok = not (too_big or too_small)
    if not ok:
        above = f"more than {factor:g}× the larger norm"
        which = above if too_big else f"below 1/{factor:g} of the smaller norm"
        msg = (
            f"OUT OF DISTRIBUTION: {msg}: {which}. The AV would see a vector unlike anything in its base; "
            "fix `injection.scale` (or record it as deliberate with ood_allowed)"
        )
    return ScaleLint(scale, embedding_norm, residual_norm, r_emb, r_res, ok, msg, factor)


def resolve_recipe_scale(
    value: Any,
    model: nn.Module,
    tokenizer: Any = None,
    layer: int | None = None,
    texts: list[str] | None = None,
) -> Any:
    """A recipe's ``injection_scale`` as a meta scale: ``embedding_norm``/``activation_norm`` measured
    on `model` (4 significant digits); numbers and ``sqrt_d_model``/``raw`` pass through."""
    if value == "embedding_norm":
        return float(f"{embedding_norm(model):.4g}")
    if value == "activation_norm":
        if tokenizer is None or layer is None:
            raise ValueError("injection_scale: activation_norm needs the tokenizer and the layer")
        return float(f"{residual_norm(model, tokenizer, layer, texts or bundled_texts(LINT_TEXTS)):.4g}")
    return value


def scale_report(
    scale: float | None,
    model: nn.Module,
    factor: float = OOD_SCALE_FACTOR,
    tokenizer: Any = None,
    layer: int | None = None,
) -> ScaleLint:
    """`lint_scale` on a loaded model; the residual norm (a forward pass) only when the embedding norm
    alone would refuse the scale."""
    embedding = embedding_norm(model)
    lint = lint_scale(scale, embedding, None, factor)
    if not lint.ok and tokenizer is not None and layer is not None:
        lint = lint_scale(scale, embedding, corpus_residual_norm(model, tokenizer, layer), factor)
    return lint
