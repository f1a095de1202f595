"""Injection schemes: one small registered class each (plan the vectors, hook the model, lint the
scale), over pure tensor functions. Vectors are ``[N, d]`` or ``[N, k, d]`` for k markers per row.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from hubkit import arch, scale_lint
from hubkit.errors import InjectionError
from hubkit.meta import Injection, Scheme, resolve_scale, sections
from hubkit.registry import Registry


def scale_vectors(vectors: Tensor, scale: float | None) -> Tensor:
    """``v · s / ‖v‖`` per vector, or `vectors` unchanged when `scale` is ``None`` (raw)."""
    if scale is None:
        return vectors
    return vectors * (scale / vectors.norm(dim=-1, keepdim=True))


def _slots(out: Tensor, positions: Tensor, vectors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Index pairs (batch rows, positions), both ``[N, k]``, and the vectors ``[N, k, d]`` on `out`'s device."""
    positions = (positions[:, None] if positions.ndim == 1 else positions).to(out.device)
    vectors = (vectors[:, None] if vectors.ndim == 2 else vectors).to(out.device)
    if positions.shape != vectors.shape[:2]:
        raise InjectionError(
            f"{tuple(vectors.shape[:2])} vectors for {tuple(positions.shape)} marker positions"
        )
    return torch.arange(out.shape[0], device=out.device)[:, None].expand_as(positions), positions, vectors


def replace_rows(embeds: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """Embeddings with row ``positions[i, j]`` of batch row ``i`` set to ``vectors[i, j]`` (new tensor)."""
    rows, pos, vec = _slots(embeds, positions, vectors)
    out = embeds.clone()
    out[rows, pos] = vec.to(embeds.dtype)
    return out


def add_norm_matched(hidden: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
    """``h_p + ‖h_p‖ · v/‖v‖`` at each slot's position (new tensor)."""
    rows, pos, vec = _slots(hidden, positions, vectors)
    out = hidden.clone()
    h = hidden[rows, pos].float()
    unit = vec.float() / vec.float().norm(dim=-1, keepdim=True)
    out[rows, pos] = (h + h.norm(dim=-1, keepdim=True) * unit).to(hidden.dtype)
    return out


class InjectionScheme:
    """One way of putting a vector into the AV.

    `embeds_only`: the whole injection lives in the input embeddings (an engine fed ``inputs_embeds``
    can run it); `scaled`: the vector is injected as ``v · scale / ‖v‖`` (an AV records the scale).
    """

    name: ClassVar[str]
    scaled: ClassVar[bool] = False
    embeds_only: ClassVar[bool] = False

    def plan_vectors(self, spec: Injection, vectors: Tensor, d_model: int) -> Tensor:
        return vectors

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        raise NotImplementedError

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        raise NotImplementedError

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> scale_lint.ScaleLint:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


SCHEMES: Registry[InjectionScheme] = Registry("injection scheme", hint="`injection.scheme` in nla_meta.yaml")


def register_scheme(cls: type[InjectionScheme]) -> type[InjectionScheme]:
    """Class decorator: register the scheme under ``cls.name`` (a taken name is refused)."""
    SCHEMES.add(getattr(cls, "name", ""), cls())
    if cls.name not in sections.SCHEMES:
        sections.SCHEMES.add(cls.name, Scheme(scaled=cls.scaled))
    return cls


@register_scheme
class EmbeddingReplace(InjectionScheme):
    """The embedding row at the marker becomes ``v · s / ‖v‖``, after the model's own embedding scaling."""

    name = "embedding_replace"
    scaled = True
    embeds_only = True

    def plan_vectors(self, spec: Injection, vectors: Tensor, d_model: int) -> Tensor:
        return scale_vectors(vectors, resolve_scale(spec.scale, d_model))

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        return arch.text_model(model).embed_tokens

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        return replace_rows(output, positions, vectors)

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> scale_lint.ScaleLint:
        return scale_lint.scale_report(resolve_scale(spec.scale, d_model), model)


@register_scheme
class ResidualAdd(InjectionScheme):
    """Norm-matched addition ``h + ‖h‖ · v/‖v‖`` at the output of decoder block ``block`` (no scale)."""

    name = "residual_add"

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        layers = arch.decoder_layers(model)
        if spec.block >= len(layers):
            raise InjectionError(f"injection.block {spec.block} is beyond the model's {len(layers)} blocks")
        return layers[spec.block]

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        return add_norm_matched(output, positions, vectors)

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> scale_lint.ScaleLint:
        msg = f"residual addition at block {spec.block}: norm-matched, no scale"
        return replace(scale_lint.scale_report(None, model), message=msg)
