"""The card context and the writer of a model repo's card and provenance (pair half, AV or AR alone,
trajectory): what a card states that is not a figure of eval.json (the author's words, the link to the
other half, how to load it, the licence stanza, the method's citation, where the code lives)."""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubkit import constants
from hubkit.data.sidecar import hubkit_version
from hubkit.eval.report import EvalReport
from hubkit.identity import hub_id
from hubkit.meta import NLAMeta
from hubkit.provenance import git_state
from hubkit.release import cards
from hubkit.release.errors import ReleaseError
from hubkit.release.families import LegalPlan, copy_legal
from hubkit.release.honesty import CitedEval, copy_plots
from hubkit.release.provenance import RepoTarget, eval_summary, parents, write_provenance
from hubkit.release.public import PublicNames
from hubkit.release.spec import REPO_RE, LoadedSpec, ReleaseSpec

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


def card_base_model(ls: LoadedSpec, meta: NLAMeta) -> str:
    """The Hub id for the card header: `card.base_model`, the registry's id, or the meta's if it is one."""
    if ls.spec.card.base_model:
        return ls.spec.card.base_model
    name = meta.base_model
    if hub_id(name) != name:  # an offline registry model
        return hub_id(name)
    if REPO_RE.match(name) and not Path(name).exists():
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
    sub = [f'{role}_subfolder="{subfolder}"'] if subfolder else []
    if other not in repos:
        parts = [f'{role}="{mine}"', f'{other}="<the {other.upper()} trained with it>"']
        return ", ".join([*parts, f'{role}_revision="{tag}"', *sub])
    args = {role: mine, other: repos[other]}
    parts = [f'av="{args["av"]}"', f'ar="{args["ar"]}"']
    other_rev = spec.other_revision()
    if other_rev == tag:
        parts.append(f'revision="{tag}"')
    else:
        parts.append(f'{role}_revision="{tag}"')
        if other_rev:
            parts.append(f'{other}_revision="{other_rev}"')
    return ", ".join(parts + sub)


def code_url() -> str | None:
    """hubkit's own home page, from its installed metadata (``[project.urls]``), when it declares one."""
    try:
        meta = importlib.metadata.metadata("hubkit")
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
    return urls[0] if urls else meta.get("Home-page")


def common_context(ls: LoadedSpec) -> dict:
    """What every card (model, trajectory, dataset) prints from the spec and the code state."""
    c, git = ls.spec.card, git_state()
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
        "code": {"url": c.code_url or code_url(), "version": hubkit_version(), "commit": git.get("commit")},
    }


def _train_fve(train_ev: EvalReport | None) -> dict | None:
    """The training-distribution FVE of a second eval of the same checkpoints, or None when not measured."""
    if train_ev is None:
        return None
    rt = train_ev.figures.round_trip.all
    fve = {"value": rt.fve.value, "ci_low": rt.fve.ci_low, "ci_high": rt.fve.ci_high}
    return {**fve, "n": rt.n, "table_sha256": train_ev.inputs["table"]["sha256"]}


def write_model_repo(
    ls: LoadedSpec,
    dest: Path,
    target: RepoTarget,
    *,
    role: str,
    meta: NLAMeta,
    base_id: str,
    cited: CitedEval,
    legal: LegalPlan,
    names: PublicNames,
    training: list[dict],
    template: str,
    eval_results: list,
    tags: list[str],
    cards_dir: Path | None,
    title: str,
    sources: dict[str, dict],
    provenance: dict,
    subfolder: str | None = None,
    train_ev: EvalReport | None = None,
    **kind_specific: Any,
) -> None:
    """Copy the legal files and plots into `dest`, then write the model card (``ModelCardData`` header, body
    from `template`, checked to print what the base's licence asks for) and, last, ``provenance.json``.
    `kind_specific` adds the template's own keys to the card context."""
    spec = ls.spec
    ev = names.public_tree(cited.data)  # the card prints eval.json values: no local paths
    sources = sources | copy_legal(legal, dest)
    other = "ar" if role == "av" else "av"
    nla = ev["nla"]
    context = {
        **common_context(ls),
        "title": spec.card.title or title,
        "role": role,
        "role_long": ROLE_LONG[role],
        "role_does": ROLE_DOES[role],
        "repo_id": target.repo_id,
        "other": {
            "role": other,
            "role_long": ROLE_LONG[other],
            "repo_id": spec.repos[other],
            "url": f"{cards.HUB_URL}/{spec.repos[other]}",
        }
        if other in spec.repos
        else None,
        "nla": {  # layer and width from the meta, the rest as eval.json measured it
            "base_model": base_id,
            "layer": meta.layer,
            "d_model": meta.d_model,
            "injection_scheme": nla["injection"]["scheme"],
            "injection_scale": nla["injection"].get("scale"),
            "ar_num_layers": nla.get("ar_num_layers"),
            "adapter": meta.adapter.kind,
        },
        "load_args": load_code(spec, role, subfolder=subfolder),
        "ev": ev,
        "plots": copy_plots(cited.data, cited.path, dest),
        "corrections": [asdict(c) for c in spec.corrections],
        "training_data": training,
        "legal": legal.context(),
        "license": legal.license,
        "train_fve": _train_fve(train_ev),
        "eval_extras": [k for k in EVAL_EXTRAS if (ev.get("figures") or {}).get(k) is not None],
        **kind_specific,
    }
    card = cards.model_card(
        context, template, cards_dir, tags=tags, **legal.card_header(), base_model=base_id,
        eval_results=eval_results or None, model_name=target.repo_id, datasets=spec.datasets or None,
        language=spec.card.language or None,
    )  # fmt: skip
    legal.check_card(card, template)
    (dest / constants.CARD_FILE).write_text(card)
    record = {
        "sources": sources,
        "eval": eval_summary(cited.data, cited.path),
        "training_data": training,
        "license": legal.record(),
        "parents": parents(ls, base_id, meta, role),
        "corrections": context["corrections"],
        **provenance,
    }
    write_provenance(dest, ls, target, record, names=names)
