"""Demo stage 9: the released pair and the AV trajectory evaluated on held-out documents (`hubkit.eval`),
plus the AR alone on the true labels when the labels are context quotes (its ceiling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubkit.demo.layout import Demo
from hubkit.demo.results import Built, Evaluated, Grpo, Trained

AR_ONLY_FILE = "ar_only.json"
TRAJECTORY_ROWS = 32
"""Held-out rows each AV checkpoint of the trajectory is evaluated on (its trend, not the headline)."""


def _eval_kwargs(d: Demo) -> dict[str, Any]:
    s = d.settings
    return dict(max_new_tokens=s.eval_tokens, batch_size=16, ar_batch_size=32, n_boot=s.n_boot)


def _train_tables(built: Built) -> list[Path]:
    return [built.table("av_sft"), built.table("ar_sft"), built.table("rl")]


def stage_eval(d: Demo, built: Built, av: Grpo, ar: Trained) -> Evaluated:
    from hubkit.eval.report import checkpoint_record
    from hubkit.eval.run import base_record, evaluate_pair, evaluate_trajectory
    from hubkit.pair import NLAPair

    evals = d.layout.evals
    table = built.table("eval")
    av_dir, ar_dir = Path(av.checkpoint), Path(ar.checkpoint)
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    records: dict[str, Any] = {"av": checkpoint_record(av_dir), "ar": checkpoint_record(ar_dir)}
    base = base_record(av_dir, ar_dir, None)
    if base is not None:
        records["base"] = base
    d.echo("    evaluating the released pair on the held-out documents")
    report = evaluate_pair(
        pair,
        table,
        out_dir=evals / "pair",
        seed=d.settings.seed,
        train_tables=_train_tables(built),
        checkpoints=records,
        progress=d.progress,
        **_eval_kwargs(d),
    )
    ar_only = None
    if d.settings.context_labels:
        ar_only = str(write_ar_only(pair.ar, table, evals / "pair" / AR_ONLY_FILE))
    del pair
    rows = min(TRAJECTORY_ROWS, d.settings.eval_rows)
    d.echo(f"    evaluating each AV SFT checkpoint (the trajectory) with the same AR on {rows} held-out rows")
    evaluate_trajectory(
        d.layout.run / "av",
        table,
        ar=ar_dir,
        out_dir=evals / "trajectory",
        seed=d.settings.seed,
        train_tables=_train_tables(built),
        progress=d.progress,
        rows=rows,
        **_eval_kwargs(d),
    )
    pair_json = evals / "pair" / "eval.json"
    figs = headline_figures(json.loads(pair_json.read_text()))
    summary = (
        f"round-trip cos {figs['cos_mean']:.3f} [{figs['cos_ci'][0]:.3f}, {figs['cos_ci'][1]:.3f}], "
        f"top-1 {figs['top1']:.3f} vs chance {figs['top1_chance']:.3f} "
        f"({report.verdicts['identification'].replace('_', ' ')})"
    )
    return Evaluated(
        pair=str(pair_json),
        trajectory=str(evals / "trajectory" / "eval.json"),
        ar_only=ar_only,
        summary=summary,
    )


def write_ar_only(ar, table: Path, out: Path) -> Path:
    """The AR reading each held-out row's true label: identification among the held-out vectors, mean cosine,
    and the same with an empty string (what the AR writes when it reads nothing)."""
    import numpy as np

    from hubkit.eval.identification import identification
    from hubkit.eval.metrics import cosine_rows
    from hubkit.eval.table import EvalTable

    tbl = EvalTable.read(table)
    if tbl.explanations is None:
        raise ValueError(f"{table}: no explanation column; the AR-only figure needs the eval rows labeled")
    v = tbl.vectors.float().numpy().astype(np.float64)
    v_hat = ar.reconstruct(list(tbl.explanations)).float().numpy().astype(np.float64)
    empty = ar.reconstruct([""]).float().numpy().astype(np.float64).repeat(len(tbl), axis=0)
    ident = identification(v, v_hat)
    t1 = ident.at(1)
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


def headline_figures(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers the summary quotes, read from a pair eval.json (nothing recomputed)."""
    f = ev["figures"]
    rt = f["round_trip"]["all"]
    empty = next(c for c in f["content_sensitivity"]["av"]["controls"] if c["name"] == "empty")
    t1 = next(t for t in f["identification"]["top"] if t["k"] == 1)
    return {
        "layer": ev["nla"]["layer"],
        "n": rt["n"],
        "cos_mean": rt["cos"]["mean"],
        "cos_ci": [rt["cos"]["ci_low"], rt["cos"]["ci_high"]],
        "fve": (rt.get("fve") or {}).get("value"),
        "floor_mean": f["noise_floor"]["mean"],
        "floor_p95": f["noise_floor"]["p95"],
        "frac_above_floor": f["noise_floor"]["frac_above"],
        "empty_delta": empty["delta"]["mean"],
        "empty_delta_ci": [empty["delta"]["ci_low"], empty["delta"]["ci_high"]],
        "empty_cos": empty["cos"]["mean"],
        "ar_content": f["content_sensitivity"]["av"]["verdict"],
        "top1": t1["accuracy"],
        "top1_hits": t1["hits"],
        "top1_chance": t1["chance"],
        "top1_p": t1["p_value"],
        "reads_vectors": ev["verdicts"]["reads_vectors"],
        "n_excluded": f["round_trip"]["n_excluded"],
        "distinct": f["diversity"]["distinct"],
    }
