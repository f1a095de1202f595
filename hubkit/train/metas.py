"""The AV and AR metas a recipe defines, and the injection-scale check every AV run passes first."""

from __future__ import annotations

import logging
from dataclasses import replace

from torch import nn

from hubkit import arch, injection
from hubkit.errors import InjectionError, MetaError
from hubkit.identity import hub_id
from hubkit.meta import (
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    ARSpec,
    AVSpec,
    Injection,
    NLAMeta,
    Training,
    fill_suffix_ids,
)
from hubkit.scale_lint import RECIPE_SCALES, resolve_recipe_scale
from hubkit.train.adapters import meta_adapter
from hubkit.train.recipe import AdapterRecipe, Recipe
from hubkit.verbalizer import render_prompt, resolve_marker

log = logging.getLogger(__name__)


def ar_spec(recipe: Recipe, head_bias: bool = False) -> ARSpec:
    n = recipe.nla
    return ARSpec(
        num_layers=n.ar_num_layers if n.ar_num_layers is not None else recipe.layer + 1,
        template=n.ar_template or DEFAULT_AR_TEMPLATE,
        head_bias=head_bias,
        add_bos=n.ar_add_bos,
        input_norm=n.ar_input_norm,
    )


def _prompt(recipe: Recipe, tokenizer) -> tuple[str, bool, str]:
    """(AV template, chat or not, marker) of the recipe's AV prompt on this tokenizer."""
    n = recipe.nla
    template = n.av_template or DEFAULT_AV_TEMPLATE
    chat = n.chat_template if n.chat_template is not None else bool(getattr(tokenizer, "chat_template", None))
    try:
        marker = n.marker or injection.pick_marker(
            tokenizer, lambda m: render_prompt(tokenizer, template, m, chat)
        )
    except InjectionError as exc:
        raise InjectionError(
            f"{exc}. Set `nla.marker` to a character that is one token for this tokenizer, or change "
            "`nla.av_template` so the marker is not merged with a neighbour (BPE tokenizers glue a leading "
            "space to it: write e.g. `<vector>{injection_char}</vector>`)"
        ) from exc
    return template, chat, marker


def av_meta(recipe: Recipe, model: nn.Module, tokenizer, adapter: AdapterRecipe) -> NLAMeta:
    """The AV meta: marker picked (or checked) on this tokenizer, scale resolved to a number when measured."""
    n = recipe.nla
    template, chat, marker = _prompt(recipe, tokenizer)
    scale = n.injection_scale
    if n.injection_scheme == "residual_add":
        scale = None
    elif scale in RECIPE_SCALES:
        measured = resolve_recipe_scale(scale, model, tokenizer, recipe.layer)
        log.info("injection scale = %s of the base = %s", scale, measured)
        scale = measured
    elif scale is None:
        raise InjectionError(
            "`nla.injection_scale` is required for embedding_replace (a number, sqrt_d_model, "
            "raw, embedding_norm or activation_norm)"
        )
    return NLAMeta(
        role="av",
        base_model=hub_id(recipe.base_model),
        d_model=arch.hidden_size(model),
        layer=recipe.layer,
        injection=Injection(scheme=n.injection_scheme, scale=scale, marker=marker, block=n.injection_block),
        av=AVSpec(template=template, chat_template=chat),
        ar=ar_spec(recipe),
        mse_scale=n.mse_scale,
        adapter=meta_adapter(adapter),
    )


def ar_meta(
    recipe: Recipe, model: nn.Module, adapter: AdapterRecipe, head_bias: bool, tokenizer=None
) -> NLAMeta:
    """The AR meta; with `tokenizer`, it also records its pair's marker tokens and AV template (no scale:
    the AR injects nothing), the ``tokens`` the reference's config loader reads from every sidecar."""
    meta = NLAMeta(
        role="ar",
        base_model=hub_id(recipe.base_model),
        d_model=arch.hidden_size(model),
        layer=recipe.layer,
        ar=ar_spec(recipe, head_bias),
        mse_scale=recipe.nla.mse_scale,
        adapter=meta_adapter(adapter),
    )
    if tokenizer is None:
        return meta
    n = recipe.nla
    template, chat, marker = _prompt(recipe, tokenizer)
    inj = Injection(scheme=n.injection_scheme, marker=marker, block=n.injection_block)
    meta = resolve_marker(
        meta.with_updates(injection=inj, av=AVSpec(template=template, chat_template=chat)), tokenizer
    )
    try:
        return fill_suffix_ids(meta, tokenizer)
    except MetaError as exc:  # a one-token suffix: the reference keys go without the ids
        log.warning("tokens.critic_suffix_ids not recorded: %s", exc)
        return meta


def check_injection_scale(meta: NLAMeta, model: nn.Module, allow_ood: bool, tokenizer=None) -> NLAMeta:
    """Refuse a scale more than 50× above the larger of the base's token-embedding and residual norms
    (at the NLA's layer), or below 1/50 of the smaller, unless `allow_ood`; when allowed, the meta
    records ``injection.ood_allowed: true``."""
    scale = meta.injection_scale_value()
    report = injection.scale_report(scale, model, tokenizer=tokenizer, layer=meta.layer)
    if report.ok:
        log.info("%s", report.message)
        return meta
    if not allow_ood:
        raise InjectionError(
            f"{report.message}. Pass --allow-ood-injection to train at this scale anyway; the checkpoint's meta "
            "will then record `injection.ood_allowed: true`"
        )
    log.warning("%s (allowed by --allow-ood-injection; recorded in the meta)", report.message)
    return meta.with_updates(injection=replace(meta.injection, ood_allowed=True))


def with_training(meta: NLAMeta, **fields) -> NLAMeta:
    """`meta` with its `training:` section set (every field named; the rest stay unset)."""
    return meta.with_updates(training=Training(**fields))
