"""Evaluate every checkpoint of a training trajectory and give the trend verdict on its loss curve (a JSONL
log, ``trainer_state.json``, or the checkpoints' metas)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hubkit import constants, processes
from hubkit.errors import DataError, MetaError
from hubkit.eval.extras import Extras
from hubkit.eval.generation import Generation
from hubkit.eval.metrics import DEFAULT_BOOT
from hubkit.eval.overlap import check_overlap
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.plots import trajectory as trajectory_plot
from hubkit.eval.report import (
    EvalReport,
    base_record,
    checkpoint_record,
    nla_record,
    output_record,
    table_record,
)
from hubkit.eval.sections import (
    FolderHashes,
    LossCurve,
    PointIdentification,
    SplicedPoint,
    Trajectory,
    TrajectoryFigures,
    TrajectoryPoint,
    TrajectoryVerdicts,
)
from hubkit.eval.table import EvalTable
from hubkit.eval.trained_on import from_halves
from hubkit.eval.trend import MIN_POINTS, trend
from hubkit.eval.yardstick import point_figures
from hubkit.meta import NLAMeta
from hubkit.pair import NLAPair
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

# Loss logs looked for in a run folder (hubkit.train writes metrics.jsonl: one {"step", "loss", …} per line).
LOSS_LOG_NAMES = ("metrics.jsonl", "loss.jsonl", "train_log.jsonl", "log.jsonl")


@dataclass
class Checkpoint:
    """One checkpoint folder of a trajectory, with its training step and loss."""

    name: str
    path: Path
    meta: NLAMeta
    step: int | None
    loss: float | None


def find_checkpoints(folder: str | Path) -> list[Checkpoint]:
    """Checkpoint subfolders of `folder` (those with an NLA meta), ordered by training step."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such trajectory folder")
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((sub / constants.META_FILE).is_file() or (sub / constants.AR_META_JSON).is_file()):
            if re.fullmatch(r"step_\d+", sub.name):
                raise DataError(
                    f"{sub}: a training step folder without {constants.META_FILE}; restore it from a copy, or move the "
                    "folder out of the run to evaluate the others"
                )
            continue
        meta = NLAMeta.load(sub)
        step = meta.training.step
        if step is None and (m := re.search(r"(\d+)$", sub.name)):
            step = int(m.group(1))
        found.append(Checkpoint(sub.name, sub, meta, step, meta.training.loss))
    found.sort(key=lambda c: (c.step is None, c.step if c.step is not None else 0, c.name))
    return found


def _plan(run_dir: Path, av: str | Path | None, ar: str | Path | None) -> list[tuple[Checkpoint, Path, Path]]:
    """(trajectory checkpoint, AV folder, AR folder) for every checkpoint to evaluate."""
    halves = {r: find_checkpoints(run_dir / r) for r in ("av", "ar") if (run_dir / r).is_dir()}
    if len(halves) == 2 and av is None and ar is None:
        ars = {c.name: c for c in halves["ar"]}
        common = [c for c in halves["av"] if c.name in ars]
        if not common:
            raise DataError(
                f"{run_dir}: av/ and ar/ share no checkpoint names; pass --av or --ar to fix one half"
            )
        return [(c, c.path, ars[c.name].path) for c in common]
    cks = find_checkpoints(run_dir)
    if not cks and halves:
        # One half fixed by the caller: the trajectory is the other half's folder.
        cks = halves.get("av" if ar is not None else "ar") or next(iter(halves.values()))
    if not cks:
        raise DataError(
            f"{run_dir}: no checkpoint subfolders (folders holding {constants.META_FILE}) to evaluate"
        )
    roles = {c.meta.role for c in cks}
    if len(roles) > 1:
        raise MetaError(f"{run_dir}: mixes AV and AR checkpoints; put them under av/ and ar/ subfolders")
    role = roles.pop()
    if role == "av":
        if ar is not None:
            return [(c, c.path, Path(ar)) for c in cks]
        # GRPO step folders carry the AR they trained against in an `ar/` subfolder.
        if all((c.path / "ar" / constants.META_FILE).is_file() for c in cks):
            return [(c, c.path, c.path / "ar") for c in cks]
        raise DataError(f"{run_dir}: its checkpoints are AVs; give the AR to pair them with (--ar)")
    if av is None:
        raise DataError(f"{run_dir}: its checkpoints are ARs; give the AV to pair them with (--av)")
    return [(c, Path(av), c.path) for c in cks]


def read_loss_log(path: str | Path) -> tuple[list[float], list[float]]:
    """(steps, losses) from a JSONL log (lines with ``step`` and ``loss``) or an HF ``trainer_state.json``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such loss log")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            records = json.loads(text).get("log_history", [])
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{path}: not a JSONL loss log or trainer_state.json ({exc})") from exc
    pts = [
        (float(r["step"]), float(r["loss"]))
        for r in records
        if isinstance(r, dict) and "step" in r and isinstance(r.get("loss"), (int, float))
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def loss_curve(run_dir: Path, checkpoints: list[Checkpoint], loss_log: str | Path | None) -> LossCurve:
    """The loss curve for the trend verdict: an explicit or well-known log file, else the checkpoint metas."""
    folders = (run_dir, *{c.path.parent for c in checkpoints})
    given = loss_log is not None
    for cand in [Path(loss_log)] if given else [d / n for d in folders for n in LOSS_LOG_NAMES]:
        if given or cand.is_file():
            steps, losses = read_loss_log(cand)
            if steps:
                return LossCurve(str(cand), len(steps), steps, losses, sha256_file(cand))
            if given:
                raise DataError(f"{cand}: no records with both `step` and `loss` in this loss log")
    pts = [(c.step, c.loss) for c in checkpoints if c.step is not None and c.loss is not None]
    source = "checkpoint metas (training.step, training.loss)"
    return LossCurve(source, len(pts), [p[0] for p in pts], [p[1] for p in pts])


def evaluate_trajectory(
    run_dir: str | Path,
    table: EvalTable | str | Path,
    *,
    av: str | Path | None = None,
    ar: str | Path | None = None,
    out_dir: str | Path | None = None,
    base_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    loss_log: str | Path | None = None,
    train_tables: Sequence[str | Path] = (),
    force_overlap: bool = False,
    generation: Generation = Generation(),
    rows: int | None = None,
    n_boot: int = DEFAULT_BOOT,
    plots: bool = True,
    progress: bool = False,
    fixed_ar: str | Path | None = None,
    extras: Extras | None = None,
) -> EvalReport:
    """Evaluate every checkpoint of a trajectory (each one's full `evaluate_pair` eval in ``out_dir/<name>/``,
    summarised by the top-level eval.json), and give the trend verdict on its loss curve.

    `run_dir` holds checkpoint folders (``step_000050`` …) of one half (the other half is `av` or `ar`, or,
    for GRPO steps, each step's own ``ar/`` subfolder), or ``av/`` and ``ar/`` folders paired by name.
    `fixed_ar` (e.g. the SFT AR a GRPO run started from) also reads every checkpoint's explanations
    (`hubkit.eval.yardstick`). The loss curve is `loss_log`, else the run's ``metrics.jsonl``, else the
    checkpoints' ``training.step``/``training.loss``."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    plan = _plan(run_dir, av, ar)
    tbl = table if isinstance(table, EvalTable) else EvalTable.read(table)
    trained = [
        r
        for _, av_dir, ar_dir in plan
        for r in from_halves({f"AV {av_dir.name}": av_dir, f"AR {ar_dir.name}": ar_dir})
    ]
    ov = check_overlap(tbl, train_tables, force_overlap, trained)
    out = Path(out_dir) if out_dir is not None else None
    # The fixed half and the base are hashed once, not once per checkpoint.
    fixed = {k: checkpoint_record(p) for k, p in (("av", av), ("ar", ar)) if p is not None}
    base_rec = base_record(plan[0][1], plan[0][2], base_model)
    base = {"base": base_rec} if base_rec is not None else {}
    points, last = [], None
    if fixed_ar is not None:  # loaded once for every checkpoint
        extras = (extras or Extras()).load_fixed_ar(
            fixed_ar, base_model=base_model, device=device, dtype=dtype
        )
    frozen = {"frozen_ar": checkpoint_record(fixed_ar)} if fixed_ar is not None else {}
    for ck, av_dir, ar_dir in plan:
        pair = NLAPair.from_pretrained(
            av=av_dir, ar=ar_dir, base_model=base_model, device=device, dtype=dtype
        )
        recs = {k: fixed.get(k) or checkpoint_record(p) for k, p in (("av", av_dir), ("ar", ar_dir))} | base
        sub = out / ck.name if out is not None else None
        rep = evaluate_pair(
            pair, tbl, generation=generation, out_dir=sub, rows=rows, n_boot=n_boot, overlap=ov,
            checkpoints=recs, plots=plots, progress=progress, extras=extras,
        )  # fmt: skip
        last = (pair.av.meta, pair.ar.meta, pair.shared_base)
        del pair
        points.append(_point(ck, recs, rep, out, sub))
    lc = loss_curve(run_dir, [p[0] for p in plan], loss_log)
    tr, note = None, None
    if lc.n_points >= MIN_POINTS:
        tr = trend(lc.steps, lc.losses)
    else:
        note = f"no trend verdict: the loss curve has {lc.n_points} point(s), a verdict needs {MIN_POINTS}"
        log.warning("%s: %s", run_dir, note)
    figures = TrajectoryFigures(Trajectory(checkpoints=points, loss_curve=lc, trend=tr, trend_note=note))
    inputs = {
        "trajectory": str(run_dir),
        "table": table_record(tbl),
        "checkpoints": {**{f"fixed_{k}": v for k, v in fixed.items()}, **frozen, **base},
    }
    report = EvalReport(
        kind="trajectory",
        seed=generation.seed,
        generation=rep.generation,
        nla=nla_record(*last),
        inputs=inputs,
        overlap=asdict(ov),
        figures=figures,
        verdicts=TrajectoryVerdicts(
            trend=tr.verdict if tr else None, reads_vectors_last=points[-1].reads_vectors
        ),
        timing={"total_s": time.perf_counter() - t_start, "checkpoints": len(points)},
    )
    if out is not None and processes.is_main():  # under a launcher, rank 0 writes
        out.mkdir(parents=True, exist_ok=True)
        report.outputs = {"checkpoints": {p.name: p.eval_json for p in points}}
        if plots:
            path = trajectory_plot(figures.trajectory, out / constants.PLOTS_DIR / "trajectory.png")
            report.outputs["plots"] = {"trajectory": output_record(out, path)}
        report.write(out)
    return report


def _point(
    ck: Checkpoint, recs: dict, rep: EvalReport, out: Path | None, sub: Path | None
) -> TrajectoryPoint:
    """One checkpoint's headline figures for the trajectory summary."""
    fig = rep.figures
    rt, sl = fig.round_trip, fig.spliced_loss
    t1, t5 = fig.identification.at(1), fig.identification.at(5)
    return TrajectoryPoint(
        name=ck.name,
        step=ck.step,
        loss=ck.loss,
        av=FolderHashes(recs["av"]["path"], recs["av"]["files"]),
        ar=FolderHashes(recs["ar"]["path"], recs["ar"]["files"]),
        eval_json=output_record(out, sub / constants.EVAL_FILE) if sub is not None else None,
        cos=rt.all.cos,
        fve=rt.all.fve,
        cos_valid_only=rt.valid_only.cos,
        n_excluded=rt.n_excluded,
        noise_floor_p95=fig.noise_floor.p95,
        frac_above_floor=fig.noise_floor.frac_above,
        identification=PointIdentification(
            top1=t1.accuracy, top5=t5.accuracy, chance_top1=t1.chance, chance_top5=t5.chance
        ),
        ar_content=rep.verdicts.ar_content,
        reads_vectors=rep.verdicts.reads_vectors,
        distinct_frac=fig.diversity.distinct_frac,
        fixed_ar=point_figures(fig.fixed_ar),
        spliced_loss=None
        if sl is None
        else SplicedPoint(
            sl.frac_recovered, sl.frac_recovered_ci_low, sl.frac_recovered_ci_high, sl.kl_reconstruction.mean
        ),
    )
