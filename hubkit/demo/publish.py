"""Demo stages 10-12: release specs (as `ReleaseSpec` objects) and bundles, the push to a local Hub, and
the pair loaded back from it by repo id and tag (`hubkit.release`, `hubkit.localhub`, `hubkit.pair`)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from hubkit import hub, models
from hubkit.data.labeler_registry import make_labeler
from hubkit.demo.results import BaseModel, Built, Evaluated, Grpo, Pushed, Released, Reloaded, Trained
from hubkit.demo.settings import TAG, TOKEN
from hubkit.demo.state import Demo, repos
from hubkit.eval.table import EvalTable
from hubkit.localhub import LocalHub, use_endpoint
from hubkit.pair import NLAPair
from hubkit.release.bundle import Bundle, build_bundle
from hubkit.release.push import push_bundle
from hubkit.release.spec import CardText, ReleaseSpec, load_spec
from hubkit.train.trajectory import latest_step

PAIR, TRAJECTORY, DATASET = "demo-pair", "demo-trajectory", "demo-dataset"


def what_the_explanations_are(d: Demo) -> str:
    """One sentence for cards and the summary: what the labels (and so the AV's outputs) say."""
    s = d.settings
    if s.context_labels:
        name = make_labeler(s.labeler).name
        return (
            f"Its explanations are quotes of context, not interpretations: it was trained on `{name}` labels "
            '(`The text ends with: "... <the last words up to the vector\'s position>"`, the current token in '
            "brackets), so a good round trip means the vector carries its recent context, nothing more. "
            "Train on an LLM labeler's labels (`hubkit demo --labeler transformers`, `hubkit label`) for "
            "explanations of what the model computes."
        )
    return (
        f"Its labels were written by `{s.labeler}` (the base model labeling its own activations); at this "
        "size they are mostly noise."
    )


def card_text(d: Demo, base: BaseModel, what: str, *, with_base: bool = True) -> CardText:
    s = d.settings
    hub_base = base.card_base or models.get_spec(s.model).hf_repo
    scale = (
        "a tiny random model, so its explanations mean nothing: it only exercises the plumbing"
        if s.quick
        else f"{s.ar_steps} AR and {s.steps} AV SFT steps and {s.grpo_steps} GRPO steps on {s.rows} labeled rows, "
        "on a CPU"
    )
    return CardText(
        title=f"hubkit demo: {what} ({hub_base}, layer {base.layer})",
        summary=f"Made by `hubkit demo` ({scale}). A demonstration of the pipeline. "
        + what_the_explanations_are(d),
        intended_use="Seeing what an NLA release made by hubkit holds: the files, the card, the numbers and "
        "their provenance. Loading it back with `NLAPair.from_pretrained`.",
        out_of_scope="Any interpretability claim beyond what its labels say: the training was minutes long on "
        "a few hundred rows.",
        limitations="Trained for minutes on a few hundred rows of one small bundled corpus. "
        + what_the_explanations_are(d)
        + " The numbers below are measured on held-out documents; read the noise floor and the controls "
        "before the cosine.",
        citation="@misc{hubkit_demo,\n  title = {hubkit demo release},\n  note = {made by `hubkit demo`}\n}",
        base_model=base.card_base if with_base else None,
        tags=["hubkit-demo"],
        language=["en"],
    )


def release_specs(
    d: Demo, base: BaseModel, built: Built, av: Grpo, ar: Trained, evaluated: Evaluated
) -> dict[str, Any]:
    """The three releases (pair, AV trajectory, dataset) as validated `ReleaseSpec` objects."""

    r = repos(d.settings, base)
    license_id = "apache-2.0" if d.settings.quick else models.get_spec(d.settings.model).license
    common: dict[str, Any] = {"tag": TAG, "license": license_id}
    sft = [str(built.table("av_sft")), str(built.table("ar_sft"))]
    grpo_run = d.layout.run / "grpo"
    if latest_step(grpo_run) is not None:
        # GRPO steps carry the AR trained with them (step_*/ar), so no partner AR is named
        trajectory: dict[str, Any] = {
            "repos": {"trajectory": r["trajectory"]},
            "trajectory": str(grpo_run),
            "training_data": [str(built.table("rl"))],
            "card": card_text(d, base, "GRPO trajectory (each step with the AR trained alongside, in ar/)"),
        }
    else:
        trajectory = {
            "repos": {"trajectory": r["trajectory"], "ar": r["ar"]},
            "trajectory": str(d.layout.run / "av"),
            "partner_revision": TAG,
            "training_data": sft[:1],
            "card": card_text(d, base, "AV SFT trajectory"),
        }
    return {
        PAIR: ReleaseSpec(
            kind="pair",
            repos={"av": r["av"], "ar": r["ar"]},
            checkpoints={"av": av.checkpoint, "ar": av.ar_checkpoint or ar.checkpoint},
            eval=evaluated.pair,
            training_data=sft,
            datasets=[r["dataset"]],
            card=card_text(d, base, "NLA pair"),
            **common,
        ),
        TRAJECTORY: ReleaseSpec(
            kind="trajectory",
            eval=evaluated.trajectory,
            datasets=[r["dataset"]],
            **trajectory,
            **common,
        ),
        DATASET: ReleaseSpec(
            kind="dataset",
            repos={"dataset": r["dataset"]},
            data_files=[str(built.table(t)) for t in ("av_sft", "ar_sft", "rl", "eval")],
            card=card_text(d, base, "NLA training data", with_base=False),
            **common,
        ),
    }


def spec_yaml(spec: Any) -> dict[str, Any]:
    """A spec object as the YAML mapping `load_spec` reads back (fields left at their defaults omitted)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(value):
            value = spec_yaml(value)
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        if value != default or f.name in ("schema", "kind"):
            out[f.name] = value
    return out


def stage_release(
    d: Demo, base: BaseModel, built: Built, av: Grpo, ar: Trained, evaluated: Evaluated
) -> Released:
    folder = d.layout.releases
    folder.mkdir(parents=True, exist_ok=True)
    specs, bundles = {}, {}
    for name, spec in release_specs(d, base, built, av, ar, evaluated).items():
        path = folder / f"{name}.yaml"
        header = f"# written by `hubkit demo` for the run in {d.layout.out.resolve()}\n"
        path.write_text(header + yaml.safe_dump(spec_yaml(spec), sort_keys=False))
        specs[name] = str(path)
        loaded = load_spec(name, releases_dir=folder, root=d.layout.out)
        bundles[name] = str(build_bundle(loaded, d.layout.dist / name).root)
    return Released(specs=specs, bundles=bundles, dist=str(d.layout.dist))


@contextlib.contextmanager
def local_hub(d: Demo) -> Iterator[str]:
    """The local Hub over OUT/hub, with every client pointed at it and downloads cached under OUT."""
    import huggingface_hub.constants as hc

    before = hc.HF_HUB_CACHE
    hc.HF_HUB_CACHE = str(d.layout.hf_cache)
    try:
        with LocalHub(d.layout.hub_root) as server, use_endpoint(server.endpoint, token=TOKEN):
            yield server.endpoint
    finally:
        hc.HF_HUB_CACHE = before


def stage_push(d: Demo, base: BaseModel, released: Released) -> Pushed:
    commits = {}
    with local_hub(d) as endpoint:
        if base.card_base:  # the tiny base goes to the Hub too, so the cards' base_model link resolves
            hub.push_folder(
                Path(base.base),
                base.card_base,
                tag=TAG,
                tag_message="hubkit demo base",
                commit_message="tiny random base for hubkit demo --quick",
                endpoint=endpoint,
                token=TOKEN,
            )
        for folder in released.bundles.values():
            for p in push_bundle(Bundle.load(folder), endpoint=endpoint, token=TOKEN):
                commits[p.target.repo_id] = p.result.commit
    return Pushed(commits=commits, tag=TAG, hub_root=str(d.layout.hub_root))


def stage_reload(d: Demo, base: BaseModel, built: Built, evaluated: Evaluated) -> Reloaded:
    """Load the pair back by repo id and tag; round-trip the first eval batch; compare with the eval's rows."""
    r = repos(d.settings, base)
    rows = pq.read_table(Path(evaluated.pair).parent / "rows.parquet").to_pydict()
    table = EvalTable.read(built.table("eval"))
    k = min(16, len(table))
    idx = np.asarray(rows["row"][:k])
    vectors = table.vectors[torch.as_tensor(idx)]
    with local_hub(d):
        pair = NLAPair.from_pretrained(av=r["av"], ar=r["ar"], revision=TAG)
        res = pair.round_trip(vectors, batch_size=16, max_new_tokens=d.settings.eval_tokens)
    cos = res.cos.tolist()
    return Reloaded(
        repos=f"{r['av']} + {r['ar']}",
        tag=TAG,
        rows=idx.tolist(),
        explanations=list(res.explanations),
        cos=cos,
        mean_cos=float(np.mean(cos)),
        same_explanations=sum(a == b for a, b in zip(res.explanations, rows["explanation"][:k])),
        max_abs_cos_diff_vs_eval=float(np.max(np.abs(np.asarray(cos) - np.asarray(rows["cos"][:k])))),
    )
