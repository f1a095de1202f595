"""Demo stage 9: the released pair and the AV trajectory evaluated on held-out documents (`hubkit.eval`),
plus the AR alone on the true labels when the labels are context quotes (its ceiling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hubkit.demo.results import Built, Evaluated, Grpo, Trained, headline_figures
from hubkit.demo.state import Demo
from hubkit.eval.extras import Extras
from hubkit.eval.generation import Generation
from hubkit.eval.identification import identification
from hubkit.eval.metrics import cosine_rows
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import base_record, checkpoint_record
from hubkit.eval.table import EvalTable
from hubkit.eval.trajectory import evaluate_trajectory
from hubkit.pair import NLAPair
from hubkit.train.trajectory import latest_step

AR_ONLY_FILE = "ar_only.json"
TRAJECTORY_ROWS = 32
"""Held-out rows each AV checkpoint of the trajectory is evaluated on (its trend, not the headline)."""


def _eval_kwargs(d: Demo, built: Built) -> dict[str, Any]:
    """What the pair and the trajectory evals share: generation, bootstrap, the training tables, the bar."""
    s = d.settings
    gen = Generation(max_new_tokens=s.eval_tokens, batch_size=16, ar_batch_size=32, seed=s.seed)
    train_tables = [built.table(t) for t in ("av_sft", "ar_sft", "rl")]
    return dict(generation=gen, n_boot=s.n_boot, train_tables=train_tables, progress=d.progress)


def stage_eval(d: Demo, built: Built, grpo: Grpo, ar: Trained, av: Trained) -> Evaluated:
    """The released pair (the RL AV with its co-trained AR, read by the frozen SFT AR too), the SFT pair
    on the same rows (RL's starting point), and every GRPO checkpoint with both ARs."""
    evals = d.layout.evals
    av_dir, ar_dir = Path(grpo.checkpoint), Path(grpo.ar_checkpoint or ar.checkpoint)
    sft_av, sft_ar = Path(av.checkpoint), Path(ar.checkpoint)
    fixed = sft_ar if ar_dir != sft_ar else None
    d.echo(
        "    evaluating the released pair on the held-out documents"
        + (" (and the frozen SFT AR)" if fixed else "")
    )
    report = _eval_pair(d, built, av_dir, ar_dir, evals / "pair", fixed)
    sft_json = None
    if av_dir != sft_av or ar_dir != sft_ar:
        d.echo("    evaluating the SFT pair (RL's starting point) on the same rows")
        _eval_pair(d, built, sft_av, sft_ar, evals / "sft_pair", None)
        sft_json = str(evals / "sft_pair" / "eval.json")
    ar_only = None
    if d.settings.context_labels:
        pair = NLAPair.from_pretrained(av=sft_av, ar=sft_ar)
        ar_only = str(write_ar_only(pair.ar, built.table("eval"), evals / "pair" / AR_ONLY_FILE))
        del pair
    trajectory = _eval_trajectory(d, built, sft_ar)
    pair_json = evals / "pair" / "eval.json"
    figs = headline_figures(json.loads(pair_json.read_text()))
    summary = (
        f"round-trip cos {figs['cos_mean']:.3f} [{figs['cos_ci'][0]:.3f}, {figs['cos_ci'][1]:.3f}], "
        f"top-1 {figs['top1']:.3f} vs chance {figs['top1_chance']:.3f} "
        f"({report.verdicts['identification'].replace('_', ' ')})"
    )
    return Evaluated(
        pair=str(pair_json), trajectory=str(trajectory), ar_only=ar_only, summary=summary, sft_pair=sft_json
    )


def _eval_pair(d: Demo, built: Built, av_dir: Path, ar_dir: Path, out: Path, fixed_ar: Path | None):
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    records: dict[str, Any] = {"av": checkpoint_record(av_dir), "ar": checkpoint_record(ar_dir)}
    if (base := base_record(av_dir, ar_dir, None)) is not None:
        records["base"] = base
    extras = None
    if fixed_ar is not None:
        records["frozen_ar"] = checkpoint_record(fixed_ar)
        extras = Extras().load_fixed_ar(fixed_ar)
    return evaluate_pair(
        pair,
        built.table("eval"),
        out_dir=out,
        checkpoints=records,
        extras=extras,
        **_eval_kwargs(d, built),
    )


def _eval_trajectory(d: Demo, built: Built, sft_ar: Path) -> Path:
    """Every GRPO checkpoint with its own AR and the frozen SFT AR; the AV SFT run when GRPO wrote none."""
    grpo_run = d.layout.run / "grpo"
    rows = min(TRAJECTORY_ROWS, d.settings.eval_rows)
    out = d.layout.evals / "trajectory"
    if latest_step(grpo_run) is not None:
        run, kw = grpo_run, {"fixed_ar": sft_ar}
        what = "each GRPO checkpoint with its own AR and the frozen SFT AR"
    else:
        run, kw = d.layout.run / "av", {"ar": sft_ar}
        what = "each AV SFT checkpoint (the trajectory) with the SFT AR"
    d.echo(f"    evaluating {what} on {rows} held-out rows")
    evaluate_trajectory(
        run,
        built.table("eval"),
        out_dir=out,
        rows=rows,
        **kw,
        **_eval_kwargs(d, built),
    )
    return out / "eval.json"


def write_ar_only(ar, table: Path, out: Path) -> Path:
    """The AR reading each held-out row's true label: identification among the held-out vectors, mean cosine,
    and the same with an empty string (what the AR writes when it reads nothing)."""

    tbl = EvalTable.read(table)
    if tbl.explanations is None:
        raise ValueError(f"{table}: no explanation column; the AR-only figure needs the eval rows labeled")
    v = tbl.vectors.float().numpy().astype(np.float64)
    v_hat = ar.reconstruct(list(tbl.explanations)).float().numpy().astype(np.float64)
    empty = ar.reconstruct([""]).float().numpy().astype(np.float64).repeat(len(tbl), axis=0)
    t1 = identification(v, v_hat).at(1)
    cos, cos_empty = cosine_rows(v, v_hat), cosine_rows(v, empty)
    figures = {
        "n": len(tbl),
        "top1": t1.accuracy,
        "top1_hits": t1.hits,
        "top1_chance": t1.chance,
        "top1_p": t1.p_value,
        "cos_mean": float(np.mean(cos)),
        "empty_cos_mean": float(np.mean(cos_empty)),
        "table_sha256": tbl.sha256,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return out
