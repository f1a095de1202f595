"""Putting a vector into the AV: pure functions first, then the forward hooks that apply them.

Two published schemes:

* ``embedding_replace``: the input-embedding row at the marker token becomes ``v · s / ‖v‖``,
  in the space *after* the model's own embedding scaling (a hook on the embedding module's
  output, so Gemma's ``sqrt(d)`` factor is already applied to the other rows).
* ``residual_add``: at the output of decoder block ``b``, ``h_p ← h_p + ‖h_p‖ · v / ‖v‖``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hubkit import arch
from hubkit.constants import OOD_SCALE_FACTOR
from hubkit.errors import InjectionError
from hubkit.meta import Injection

log = logging.getLogger(__name__)

MARKER_CANDIDATES = ("ㅤ", "¶", "§", "∆", "⊕", "★", "◆", "¤", "‡", "†", "@", "#")


# -- validation and scaling (pure) -------------------------------------------------------------
def check_vectors(vectors: Tensor, d_model: int) -> Tensor:
    """Return `vectors` as float32 ``[N, d]``; refuse wrong width, NaN/inf and all-zero rows."""
    if not isinstance(vectors, Tensor):
        vectors = torch.as_tensor(vectors)
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2:
        raise InjectionError(f"vectors must have shape [N, {d_model}], got {tuple(vectors.shape)}")
    if vectors.shape[1] != d_model:
        raise InjectionError(
            f"vectors have width {vectors.shape[1]} but this NLA reads d_model={d_model}; "
            "extract them at the NLA's layer from its base model"
        )
    if vectors.shape[0] == 0:
        raise InjectionError("no vectors given (N = 0)")
    v = vectors.detach().float()
    bad = (~torch.isfinite(v)).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise InjectionError(f"vectors hold NaN or inf in rows {bad[:10]}{' …' if len(bad) > 10 else ''}")
    zero = (v.norm(dim=1) == 0).nonzero().flatten().tolist()
    if zero:
        raise InjectionError(
            f"vectors are all-zero in rows {zero[:10]}: a zero vector has no direction to inject"
        )
    return v


def scale_vectors(vectors: Tensor, scale: float | None) -> Tensor:
    """``v · s / ‖v‖`` row-wise, or `vectors` unchanged when `scale` is ``None`` (raw)."""
    if scale is None:
        return vectors
    return vectors * (scale / vectors.norm(dim=-1, keepdim=True))


def find_markers(
    input_ids: Tensor,
    marker_id: int,
    left_id: int | None = None,
    right_id: int | None = None,
    n_vectors: int | None = None,
) -> Tensor:
    """Position of the one marker in each row, where its neighbours match when given.

    Raises when a row holds no or several matching markers, or the count differs from the vectors.
    """
    hit = input_ids == marker_id
    if left_id is not None:
        left = torch.zeros_like(hit)
        left[:, 1:] = input_ids[:, :-1] == left_id
        hit &= left
    if right_id is not None:
        right = torch.zeros_like(hit)
        right[:, :-1] = input_ids[:, 1:] == right_id
        hit &= right
    counts = hit.sum(dim=1)
    total = int(counts.sum())
    n = n_vectors if n_vectors is not None else input_ids.shape[0]
    if total != n or bool((counts != 1).any()):
        rows = (counts != 1).nonzero().flatten().tolist()
        raise InjectionError(
            f"found {total} marker tokens (id {marker_id}, neighbours {left_id}/{right_id}) for {n} vectors; "
            f"rows without exactly one: {rows[:10]}. Check the AV template and the meta's token ids"
        )
    return hit.float().argmax(dim=1)


def replace_rows(embeds: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """Embeddings with row ``positions[i]`` of batch row ``i`` set to ``vectors[i]`` (new tensor)."""
    out = embeds.clone()
    rows = torch.arange(embeds.shape[0], device=embeds.device)
    out[rows, positions.to(embeds.device)] = vectors.to(device=embeds.device, dtype=embeds.dtype)
    return out


def add_norm_matched(hidden: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """``h_p + ‖h_p‖ · v/‖v‖`` at each row's position (new tensor)."""
    out = hidden.clone()
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    pos = positions.to(hidden.device)
    h = hidden[rows, pos].float()
    unit = vectors.to(hidden.device).float()
    unit = unit / unit.norm(dim=-1, keepdim=True)
    out[rows, pos] = (h + h.norm(dim=-1, keepdim=True) * unit).to(hidden.dtype)
    return out


# -- hooks ------------------------------------------------------------------------------------
@dataclass
class InjectionPlan:
    """What to inject where, for one forward over ``seq_len`` tokens."""

    positions: Tensor
    vectors: Tensor  # already scaled for embedding_replace; raw directions for residual_add
    seq_len: int


def plan(spec: Injection, input_ids: Tensor, vectors: Tensor, d_model: int) -> InjectionPlan:
    """Validate vectors, locate markers and pre-scale: everything the hook needs, pure."""
    v = check_vectors(vectors, d_model)
    if spec.marker_token_id is None:
        raise InjectionError(
            "the meta's `injection.marker_token_id` is unresolved; load the NLA with its tokenizer"
        )
    pos = find_markers(input_ids, spec.marker_token_id, spec.left_neighbor_id, spec.right_neighbor_id, len(v))
    if spec.scheme == "embedding_replace":
        from hubkit.meta import resolve_scale

        v = scale_vectors(v, resolve_scale(spec.scale, d_model))
    return InjectionPlan(positions=pos, vectors=v, seq_len=input_ids.shape[1])


def _replace_output(output, fn):
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    if hasattr(output, "last_hidden_state"):
        output.last_hidden_state = fn(output.last_hidden_state)
        return output
    return fn(output)


def _first_tensor(output) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def injected(model: nn.Module, spec: Injection, p: InjectionPlan) -> Iterator[None]:
    """Apply `p` on every forward over at least ``p.seq_len`` tokens (the prefill, a teacher-forced
    pass, or each step of a generation without a KV cache, whose prefix is the prompt); decoding
    steps with a KV cache (length 1) pass through untouched."""
    if spec.scheme == "embedding_replace":
        module: nn.Module = arch.text_model(model).embed_tokens

        def fn(t: Tensor) -> Tensor:
            return replace_rows(t, p.positions, p.vectors)
    else:
        layers = arch.decoder_layers(model)
        if spec.block >= len(layers):
            raise InjectionError(f"injection.block {spec.block} is beyond the model's {len(layers)} blocks")
        module = layers[spec.block]

        def fn(t: Tensor) -> Tensor:
            return add_norm_matched(t, p.positions, p.vectors)

    def hook(_mod, _args, output):
        if _first_tensor(output).shape[1] < p.seq_len:
            return output
        return _replace_output(output, fn)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# -- markers and scale checks -----------------------------------------------------------------
def marker_ids(tokenizer, prompt: str, marker: str) -> tuple[int, int | None, int | None]:
    """Token id of `marker` in the rendered `prompt` and of its left/right neighbours.

    The marker is located by character offsets, so a BPE that folds the preceding space into the
    token (``Ġ@``) is fine; the token must hold the marker and nothing but whitespace besides.
    Raises when the marker is absent, repeated, or not exactly one token there.
    """
    count = prompt.count(marker)
    if count != 1:
        raise InjectionError(
            f"marker {marker!r} appears {count} times in the rendered prompt; it must appear exactly once"
        )
    start = prompt.index(marker)
    end = start + len(marker)
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    covering = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    span = prompt[offsets[covering[0]][0] : offsets[covering[-1]][1]] if covering else ""
    if len(covering) != 1 or span.strip() != marker.strip():
        raise InjectionError(
            f"marker {marker!r} is {len(covering)} tokens ({span!r}) in the rendered prompt for this tokenizer; "
            "pick a character that is one token there (hubkit.injection.pick_marker finds one)"
        )
    i = covering[0]
    left = ids[i - 1] if i > 0 else None
    right = ids[i + 1] if i + 1 < len(ids) else None
    return ids[i], left, right


def pick_marker(tokenizer, render, candidates: tuple[str, ...] = MARKER_CANDIDATES) -> str:
    """First candidate character that is one token alone and inside ``render(marker)``."""
    for c in candidates:
        try:
            marker_ids(tokenizer, render(c), c)
        except InjectionError:
            continue
        return c
    raise InjectionError(f"none of the marker candidates {candidates} is a single token in this prompt")


@dataclass
class ScaleReport:
    scale: float | None
    embedding_norm: float
    ratio: float | None
    ok: bool
    message: str


def scale_report(scale: float | None, model: nn.Module, factor: float = OOD_SCALE_FACTOR) -> ScaleReport:
    """Compare the injection norm with the model's median token-embedding norm (after its scaling)."""
    norm = arch.median_embedding_norm(model)
    if scale is None:
        return ScaleReport(
            None, norm, None, True, f"raw vectors (no rescale); median embedding norm {norm:.3g}"
        )
    ratio = scale / norm
    ok = 1 / factor <= ratio <= factor
    msg = f"injection scale {scale:.4g} is {ratio:.3g}× the median token-embedding norm {norm:.4g}"
    if not ok:
        msg = (
            f"OUT OF DISTRIBUTION: {msg}, beyond {factor:g}× either way. The AV would see a vector unlike any "
            "token it was trained on; fix `injection.scale` (or record it as deliberate with ood_allowed)"
        )
    return ScaleReport(scale, norm, ratio, ok, msg)
