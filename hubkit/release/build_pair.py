"""Bundle an NLA pair, or one half of it: one repo folder per half, each with its card and provenance."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from hubkit import constants
from hubkit.export import export_reference
from hubkit.release import cards, honesty
from hubkit.release.context import card_base_model, write_model_repo
from hubkit.release.errors import HonestyError
from hubkit.release.families import plan_legal
from hubkit.release.outputs import CitedEval, read_eval
from hubkit.release.plan import PlannedCheckpoint, check_corrections, plan_half, retraction, write_half
from hubkit.release.provenance import RepoTarget, eval_summary, training_data
from hubkit.release.public import names_for
from hubkit.release.spec import LoadedSpec


def _check_half(ev: dict, eval_path: Path, half: PlannedCheckpoint, role: str, src: Path) -> None:
    recorded = (ev["inputs"].get("checkpoints") or {}).get(role, {}).get("files", {})
    honesty.check_hashes(half.shipped_sources(), recorded, eval_path, src, role.upper())


def _train_eval(ls: LoadedSpec, halves: dict, ev: dict) -> CitedEval | None:
    """The training-distribution eval: the same checkpoints, another table (checked like the main eval)."""
    if ls.spec.train_eval is None:
        return None
    train = read_eval(ls, "train_eval", kind="pair")
    for role, half in halves.items():
        _check_half(train.data, train.path, half, role, half.source)
    if train.report.inputs["table"]["sha256"] == ev["inputs"]["table"]["sha256"]:
        raise HonestyError(
            f"{train.path}: measured the same table as the held-out eval; `train_eval` must be an eval on a "
            "table from the training distribution (e.g. `hubkit eval` on the ar_sft or rl table)"
        )
    honesty.check_required(train.data, ("figures.round_trip.all.fve.value",), train.path)
    return train


def _exports(
    ls: LoadedSpec, halves: dict[str, PlannedCheckpoint], stack: contextlib.ExitStack
) -> dict[str, tuple[PlannedCheckpoint, dict]]:
    """`format: reference`: each half exported (merged, truncated, checked against the measured checkpoint)
    into a temporary folder, planned like a checkpoint; ``{role: (exported half, what the card says)}``."""
    if ls.spec.format != "reference":
        return {}

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hubkit-export-")))
    out = {}
    for role, half in halves.items():
        report = export_reference(half.source, tmp / role, base_model=ls.base_model)
        exported = plan_half(tmp / role, role, f"checkpoints.{role}", ls.path)
        out[role] = (
            exported,
            {
                "format": "reference",
                "dtype": report.dtype,
                "max_rel_diff": report.max_rel_diff,
                "tolerance": report.tolerance,
                "greedy_equal": list(report.greedy_equal) if report.greedy_equal else None,
            },
        )
    return out


def build_pair(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    """Check every half against eval.json, then write one folder per half; returns their targets."""
    with contextlib.ExitStack() as stack:
        return _build_pair(ls, out, cards_dir, legacy_pt, stack)


def _build_pair(
    ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool, stack: contextlib.ExitStack
) -> list[RepoTarget]:
    spec = ls.spec
    cited = read_eval(ls, kind="pair")
    ev, eval_path = cited.data, cited.path
    honesty.check_card_figures(ev, eval_path, cards.MODEL_TEMPLATE, honesty.CODE_READS_PAIR, cards_dir)
    check_corrections(ls, spec.pushed_roles)
    halves: dict[str, PlannedCheckpoint] = {}
    for role in spec.pushed_roles:
        src = ls.existing(spec.checkpoints[role], f"checkpoints.{role}", "dir")
        half = plan_half(src, role, f"checkpoints.{role}", ls.path)
        _check_half(ev, eval_path, half, role, src)
        halves[role] = half
    if len(halves) == 2:
        honesty.check_pair_metas(
            halves["av"].meta, halves["ar"].meta, halves["av"].meta_file, halves["ar"].meta_file
        )
    for half in halves.values():
        honesty.check_meta_against_eval(half.meta, ev["nla"], half.meta_file, eval_path)
    if "ar" in halves:
        honesty.check_yardstick(
            {"the pair": halves["ar"].meta},
            {"the pair": cited.report.figures.fixed_ar is not None},
            eval_path,
            spec.card.co_trained_ar,
        )
    train = _train_eval(ls, halves, ev)
    if "av" in halves:
        scale = honesty.injection_scale(
            halves["av"].meta, halves["av"].meta_file, halves["av"].source, ls.base_model
        )
    else:  # an AR alone: the eval's AV scale against the base, for the card (the AV's release refuses OOD)
        ar = halves["ar"]
        scale = honesty.measure_scale(
            ev["nla"]["injection"].get("scale"),
            ls.base_model or ar.meta.base_model,
            eval_path,
            layer=ar.meta.layer,
        )
    training = training_data(ls)
    first = next(iter(halves.values()))
    base_id = card_base_model(ls, first.meta)
    legal = plan_legal(ls, first.meta, base_id, first.source)
    exports = _exports(ls, halves, stack)
    names = names_for(ls, base_id, [h.meta.base_model for h in halves.values()])
    if scale is not None:
        scale = names.public_tree(scale)
    results = cards.pair_eval_results(cited.report, spec.eval_dataset or "hubkit-eval-table")
    targets = []
    for role, half in halves.items():
        target = RepoTarget(role, spec.repos[role], "model", role, spec.tag, spec.private)
        dest = out / target.folder
        reason = retraction(ls, role)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(eval_path, dest / constants.EVAL_FILE)  # before write_half rewrites its local paths
        shipped, export = exports.get(role, (half, None))
        sources = write_half(shipped, dest, legacy_pt, reason, names)
        write_model_repo(
            ls, dest, target, role=role, meta=half.meta, base_id=base_id, cited=cited, legal=legal, names=names,
            training=training, template=cards.MODEL_TEMPLATE, eval_results=results, tags=spec.card.tags,
            cards_dir=cards_dir,
            title=f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} for {base_id} (layer {half.meta.layer})",
            sources=sources | shipped.copied_sources(),
            provenance={
                "export": export,
                "skipped": half.skipped,
                "checkpoint": {"path": str(half.source), "eval_recorded": True},
                "train_eval": eval_summary(train.data, train.path) if train else None,
                "injection": scale,
            },
            train_ev=train.report if train else None, scale=scale, retracted=reason,
            files=half.weight_files(), export=export,
        )  # fmt: skip
        targets.append(target)
    return targets
