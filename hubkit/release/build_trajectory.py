"""Bundle a training trajectory: every evaluated ``step_*`` checkpoint of one run, in one repo folder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hubkit import constants
from hubkit.eval.sections import TrajectoryPoint
from hubkit.meta import NLAMeta
from hubkit.release import cards, honesty
from hubkit.release.context import card_base_model, write_model_repo
from hubkit.release.errors import ReleaseError
from hubkit.release.families import plan_legal
from hubkit.release.outputs import copy_output, read_eval
from hubkit.release.plan import PlannedCheckpoint, check_corrections, plan_half, retraction, write_half
from hubkit.release.provenance import RepoTarget, training_data
from hubkit.release.public import names_for, publish_files
from hubkit.release.spec import LoadedSpec

log = logging.getLogger(__name__)


def _plan_points(
    ls: LoadedSpec, run: Path, points: list[TrajectoryPoint], nla: dict, eval_path: Path
) -> list[tuple[TrajectoryPoint, PlannedCheckpoint]]:
    """Each checkpoint eval.json lists, planned and checked against the hashes it recorded."""
    halves: list[tuple[TrajectoryPoint, PlannedCheckpoint]] = []
    role = None
    for p in points:
        src = run / p.name
        if not src.is_dir():
            raise ReleaseError(
                f"{eval_path}: lists checkpoint {p.name!r} but {run} has no folder of that name; "
                "point `trajectory` at the run that was evaluated"
            )
        half = plan_half(src, role, "trajectory", ls.path)
        role = role or half.meta.role
        label = f"{half.meta.role.upper()} {p.name}"
        honesty.check_hashes(half.shipped_sources(), getattr(p, half.meta.role).files, eval_path, src, label)
        honesty.check_meta_against_eval(half.meta, nla, half.meta_file, eval_path)
        halves.append((p, half))
    return halves


def _check_fixed_partner(
    ev: dict, halves: list[tuple[TrajectoryPoint, PlannedCheckpoint]], role: str
) -> None:
    other_role = "ar" if role == "av" else "av"
    fixed = (ev["inputs"].get("checkpoints") or {}).get(f"fixed_{other_role}")
    if not (fixed and Path(fixed["path"]).is_dir()):
        return
    fixed_meta = NLAMeta.load(fixed["path"])
    fixed_file = Path(fixed["path"]) / constants.META_FILE
    for _, half in halves:
        pair = (half.meta, fixed_meta) if role == "av" else (fixed_meta, half.meta)
        files = (half.meta_file, fixed_file) if role == "av" else (fixed_file, half.meta_file)
        honesty.check_pair_metas(*pair, *files)


def build_trajectory(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    """Check every evaluated checkpoint, then write them as ``step_*/`` folders of one repo."""
    spec = ls.spec
    assert spec.trajectory is not None
    run = ls.existing(spec.trajectory, "trajectory", "dir")
    cited = read_eval(ls, kind="trajectory")
    ev, eval_path, points = cited.data, cited.path, cited.report.figures.trajectory.checkpoints
    honesty.check_card_figures(
        ev, eval_path, cards.TRAJECTORY_TEMPLATE, honesty.CODE_READS_TRAJECTORY, cards_dir
    )
    names = [p.name for p in points]
    check_corrections(ls, names)
    on_disk = sorted(
        p.name
        for p in run.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / constants.META_FILE).exists() or (p / constants.AR_META_JSON).exists())
    )
    unevaluated = sorted(set(on_disk) - set(names))
    if unevaluated:
        log.warning(
            "%s: checkpoints without numbers in %s are not published: %s", run, eval_path, unevaluated
        )
    halves = _plan_points(ls, run, points, ev["nla"], eval_path)
    role = halves[0][1].meta.role
    _check_fixed_partner(ev, halves, role)
    own_ars = {
        p.name: h.source / "ar" for p, h in halves if (h.source / "ar" / constants.META_FILE).is_file()
    }
    honesty.check_yardstick(
        {name: NLAMeta.load(folder) for name, folder in own_ars.items()},
        {p.name: p.fixed_ar is not None for p, _ in halves},
        eval_path,
        spec.card.co_trained_ar,
    )
    scales = (
        {
            h.source.name: honesty.injection_scale(h.meta, h.meta_file, h.source, ls.base_model)
            for _, h in halves
        }
        if role == "av"
        else {}
    )
    last = halves[-1][1]
    base_id = card_base_model(ls, last.meta)
    legal = plan_legal(ls, last.meta, base_id, last.source)
    target = RepoTarget("trajectory", spec.repos["trajectory"], "model", "trajectory", spec.tag, spec.private)
    dest = out / target.folder
    sources: dict[str, dict] = {}
    step_evals = (ev.get("outputs") or {}).get("checkpoints") or {}
    public = names_for(ls, base_id, [h.meta.base_model for _, h in halves])
    scales = public.public_tree(scales)
    for p, half in halves:
        name = p.name
        for rel, rec in write_half(half, dest / name, legacy_pt, retraction(ls, name), public).items():
            sources[f"{name}/{rel}"] = rec
        sources |= half.copied_sources(prefix=f"{name}/")
        if step_evals.get(name):
            copy_output(
                eval_path, step_evals[name], dest / name / constants.EVAL_FILE, f"eval.json of {name}"
            )
    shutil.copyfile(eval_path, dest / constants.EVAL_FILE)
    sources |= {
        rel: {"from": str(eval_path.parent / rel), **rec} for rel, rec in publish_files(dest, public).items()
    }
    retracted = {c.checkpoint for c in spec.corrections}
    example = next((p.name for p, _ in reversed(halves) if p.name not in retracted), halves[-1][0].name)
    results = cards.trajectory_eval_results(cited.report, spec.eval_dataset or "hubkit-eval-table", retracted)
    write_model_repo(
        ls, dest, target, role=role, meta=last.meta, base_id=base_id, cited=cited, legal=legal, names=public,
        training=training_data(ls), template=cards.TRAJECTORY_TEMPLATE, eval_results=results,
        tags=[*spec.card.tags, "trajectory"], cards_dir=cards_dir,
        title=f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} trajectory for {base_id} "
        f"(layer {last.meta.layer})",
        sources=sources,
        provenance={"checkpoints": names, "not_published": unevaluated, "injection": scales},
        subfolder=example, scales=scales, retracted=sorted(retracted),
    )  # fmt: skip
    return [target]
