"""The card context: one builder for every model card (a pair half, an AV or AR alone, a trajectory).

Everything a card states that is not a figure of eval.json is assembled here: the author's words
from the spec, the NLA's layer and width, the link to the other half, how to load it, the base
family's licence stanza and banner, the method's paper and citation, where the code lives, the
training-data attribution and the training-distribution FVE beside the held-out figures.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubkit import constants
from hubkit.data.sidecar import hubkit_version
from hubkit.eval.report import EvalReport
from hubkit.identity import hub_id
from hubkit.meta import NLAMeta
from hubkit.release import cards
from hubkit.release.errors import ReleaseError
from hubkit.release.families import LegalPlan
from hubkit.release.spec import LoadedSpec, ReleaseSpec

ROLE_LONG = {"av": "activation verbalizer (AV)", "ar": "activation reconstructor (AR)"}
ROLE_DOES = {
    "av": "turns a residual-stream vector into a text explanation",
    "ar": "turns an explanation back into a residual-stream vector",
}
# The method every NLA release implements; its citation is printed beside the release's own.
METHOD = {
    "title": "Natural Language Autoencoders Produce Unsupervised Explanations of LLM Activations",
    "url": "https://transformer-circuits.pub/2026/nla/index.html",
    "bibtex": "@article{nla2026,\n"
    "  title   = {Natural Language Autoencoders Produce Unsupervised Explanations of LLM Activations},\n"
    "  author  = {Kantamneni, Subhash and Fraser-Taliente, Kit and Ong, Euan and Marks, Samuel and others},\n"
    "  journal = {Transformer Circuits Thread},\n"
    "  year    = {2026},\n"
    "  url     = {https://transformer-circuits.pub/2026/nla/index.html}\n"
    "}",
}
# Optional eval.json sections rendered by the `eval_extras.md.j2` partial when present.
EVAL_EXTRAS = ("paraphrase", "claim_ablation", "cross_pair", "spliced_loss", "judge")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def card_base_model(ls: LoadedSpec, meta: NLAMeta) -> str:
    """The Hub id for the card header: `card.base_model`, the registry's id, or the meta's if it is one."""
    if ls.spec.card.base_model:
        return ls.spec.card.base_model
    name = meta.base_model
    if hub_id(name) != name:  # an offline registry model
        return hub_id(name)
    if _REPO_ID.match(name) and not Path(name).exists():
        return name
    raise ReleaseError(
        f"{ls.path}: field `card.base_model` is needed: the checkpoints record base model {name!r}, which is not a "
        "Hub repo id; set `card.base_model` to the id the card header should name"
    )


def load_code(spec: ReleaseSpec, role: str, subfolder: str | None = None) -> str:
    """The one-line ``from_pretrained`` arguments for the card's three-line snippet."""
    repos, tag = spec.repos, spec.tag
    other = "ar" if role == "av" else "av"
    mine = repos["trajectory"] if spec.kind == "trajectory" else repos[role]
    if other not in repos:
        return (
            f'{role}="{mine}", {other}="<the {other.upper()} trained with it>", {role}_revision="{tag}"'
            + (f', {role}_subfolder="{subfolder}"' if subfolder else "")
        )
    args = {role: mine, other: repos[other]}
    other_rev = spec.other_revision()
    parts = [f'av="{args["av"]}"', f'ar="{args["ar"]}"']
    if other_rev != tag:
        parts.append(f'{role}_revision="{tag}"')
        if other_rev:
            parts.append(f'{other}_revision="{other_rev}"')
    else:
        parts.append(f'revision="{tag}"')
    if subfolder:
        parts.append(f'{role}_subfolder="{subfolder}"')
    return ", ".join(parts)


def _other(spec: ReleaseSpec, role: str) -> dict | None:
    other = "ar" if role == "av" else "av"
    if other not in spec.repos:
        return None
    return {
        "role": other,
        "role_long": ROLE_LONG[other],
        "repo_id": spec.repos[other],
        "url": cards.repo_url(spec.repos[other]),
    }


def code_url() -> str | None:
    """hubkit's own home page, from its installed metadata (``[project.urls]``), when it declares one."""
    import importlib.metadata

    try:
        meta = importlib.metadata.metadata("hubkit")
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
    return urls[0] if urls else meta.get("Home-page")


def _code(ls: LoadedSpec, git: dict) -> dict:
    url = ls.spec.card.code_url or code_url()
    return {"url": url, "version": hubkit_version(), "commit": git.get("commit")}


def common_context(ls: LoadedSpec, git: dict) -> dict:
    """What every card (model, trajectory, dataset) prints from the spec and the code state."""
    c = ls.spec.card
    return {
        "text": {
            "intended_use": c.intended_use.strip(),
            "limitations": c.limitations.strip(),
            "out_of_scope": (c.out_of_scope or "").strip() or None,
            "citation": c.citation,
            "co_trained_ar": (c.co_trained_ar or "").strip() or None,
        },
        "summary": c.summary,
        "datasets": ls.spec.datasets,
        "tag": ls.spec.tag,
        "hub_url": cards.HUB_URL,
        "provenance": {"git_commit": git.get("commit"), "git_dirty": git.get("dirty")},
        "method": METHOD,
        "code": _code(ls, git),
    }


def _nla(meta: NLAMeta, base_id: str, nla: dict) -> dict:
    """What the card states about the NLA: layer and width from the meta, the rest as eval.json measured it."""
    return {
        "base_model": base_id,
        "layer": meta.layer,
        "d_model": meta.d_model,
        "injection_scheme": nla["injection"]["scheme"],
        "injection_scale": nla["injection"].get("scale"),
        "ar_num_layers": nla.get("ar_num_layers"),
        "adapter": meta.adapter.kind,
    }


def train_fve(train_ev: EvalReport | None) -> dict | None:
    """The training-distribution FVE of a second eval of the same checkpoints, or None when not measured."""
    if train_ev is None:
        return None
    rt = train_ev.figures.round_trip.all
    fve = {"value": rt.fve.value, "ci_low": rt.fve.ci_low, "ci_high": rt.fve.ci_high}
    return {**fve, "n": rt.n, "table_sha256": train_ev.inputs["table"]["sha256"]}


def eval_extras(ev: dict) -> list[str]:
    """The optional eval sections (paraphrase, claim ablation, cross-pair, spliced loss, judge) this report has."""
    figures = ev.get("figures") or {}
    return [k for k in EVAL_EXTRAS if figures.get(k) is not None]


def model_context(
    ls: LoadedSpec,
    *,
    role: str,
    repo_id: str,
    meta: NLAMeta,
    base_id: str,
    ev: dict,
    plots: list[dict],
    legal: dict,
    training: list[dict],
    git: dict,
    title: str,
    subfolder: str | None = None,
    train_ev: EvalReport | None = None,
    **kind_specific: Any,
) -> dict:
    """The context of a model card (pair half or trajectory); `kind_specific` adds the template's own keys."""
    spec = ls.spec
    return {
        **common_context(ls, git),
        "title": spec.card.title or title,
        "role": role,
        "role_long": ROLE_LONG[role],
        "role_does": ROLE_DOES[role],
        "repo_id": repo_id,
        "other": _other(spec, role),
        "nla": _nla(meta, base_id, ev["nla"]),
        "load_args": load_code(spec, role, subfolder=subfolder),
        "ev": ev,
        "plots": plots,
        "corrections": [asdict(c) for c in spec.corrections],
        "training_data": training,
        "legal": legal,
        "license": legal["license"],
        "train_fve": train_fve(train_ev),
        "eval_extras": eval_extras(ev),
        **kind_specific,
    }


def write_model_card(
    ls: LoadedSpec,
    dest: Path,
    context: dict,
    legal: LegalPlan,
    *,
    template: str,
    base_id: str,
    repo_id: str,
    eval_results: list,
    tags: list[str],
    cards_dir: Path | None,
) -> None:
    """Render a model card (``ModelCardData`` header, body from `template`), check it prints what the base's
    licence asks for, and write it as the repo's README."""
    card = cards.model_card(
        context, template=template, **legal.card_header(), base_model=base_id, eval_results=eval_results,
        model_name=repo_id, datasets=ls.spec.datasets, tags=tags, language=ls.spec.card.language, cards_dir=cards_dir,
    )  # fmt: skip
    legal.check_card(card, template)
    (dest / constants.CARD_FILE).write_text(card)
