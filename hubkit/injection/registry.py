"""Injection schemes: one small class each (plan the vectors, hook the model, lint the scale).

Adding a scheme is one class here (or in user code) decorated with `register_scheme`, plus its
test. This module imports no torch at import time, so the meta modules can read the names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from hubkit.errors import InjectionError

if TYPE_CHECKING:
    from torch import Tensor, nn

    from hubkit.injection.lint import ScaleReport
    from hubkit.meta import Injection


class InjectionScheme:
    """One way of putting a vector into the AV.

    `plan_vectors` turns checked vectors into what the hook writes; `hook_module` names the module
    whose output the hook edits; `apply` edits that output at the marker positions; `lint` checks
    the scheme's settings against the model. `embeds_only` says the whole injection lives in the
    input embeddings (so an engine fed ``inputs_embeds`` can run it).
    """

    name: ClassVar[str]
    embeds_only: ClassVar[bool] = False

    def plan_vectors(self, spec: Injection, vectors: Tensor, d_model: int) -> Tensor:
        return vectors

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        raise NotImplementedError

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        raise NotImplementedError

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> ScaleReport:
        raise NotImplementedError


_SCHEMES: dict[str, InjectionScheme] = {}


def register_scheme(cls: type[InjectionScheme]) -> type[InjectionScheme]:
    """Class decorator: register a scheme under ``cls.name``; a name already taken is refused."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise InjectionError(f"{cls.__name__} has no `name`: set the class attribute to the scheme's name")
    if name in _SCHEMES:
        raise InjectionError(
            f"injection scheme {name!r} is already registered ({type(_SCHEMES[name]).__name__}); pick another name"
        )
    _SCHEMES[name] = cls()
    return cls


def scheme_names() -> list[str]:
    return sorted(_SCHEMES)


def get_scheme(name: str) -> InjectionScheme:
    """The registered scheme called `name`; an unknown name lists the registered ones."""
    try:
        return _SCHEMES[name]
    except KeyError:
        raise InjectionError(
            f"unknown injection scheme {name!r}: registered schemes are {', '.join(scheme_names())} "
            "(`injection.scheme` in nla_meta.yaml)"
        ) from None


@register_scheme
class EmbeddingReplace(InjectionScheme):
    """The input-embedding row at the marker becomes ``v · s / ‖v‖`` (after the model's own scaling)."""

    name = "embedding_replace"
    embeds_only = True

    def plan_vectors(self, spec: Injection, vectors: Tensor, d_model: int) -> Tensor:
        from hubkit.injection.vectors import scale_vectors
        from hubkit.meta import resolve_scale

        return scale_vectors(vectors, resolve_scale(spec.scale, d_model))

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        from hubkit import arch

        return arch.text_model(model).embed_tokens

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        from hubkit.injection.vectors import replace_rows

        return replace_rows(output, positions, vectors)

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> ScaleReport:
        from hubkit.injection.lint import scale_report
        from hubkit.meta import resolve_scale

        return scale_report(resolve_scale(spec.scale, d_model), model)


@register_scheme
class ResidualAdd(InjectionScheme):
    """Norm-matched addition ``h + ‖h‖ · v/‖v‖`` at the output of decoder block ``block`` (no scale)."""

    name = "residual_add"

    def hook_module(self, model: nn.Module, spec: Injection) -> nn.Module:
        from hubkit import arch

        layers = arch.decoder_layers(model)
        if spec.block >= len(layers):
            raise InjectionError(f"injection.block {spec.block} is beyond the model's {len(layers)} blocks")
        return layers[spec.block]

    def apply(self, output: Tensor, positions: Tensor, vectors: Tensor) -> Tensor:
        from hubkit.injection.vectors import add_norm_matched

        return add_norm_matched(output, positions, vectors)

    def lint(self, spec: Injection, model: nn.Module, d_model: int) -> ScaleReport:
        from dataclasses import replace

        from hubkit.injection.lint import scale_report

        msg = f"residual addition at block {spec.block}: norm-matched, no scale"
        return replace(scale_report(None, model), message=msg)
