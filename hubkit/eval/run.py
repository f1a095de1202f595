"""Evaluate an NLA pair (or every checkpoint of a trajectory) on a held-out eval table.

`evaluate_pair` runs the round trip batched (the AV generates for a batch of vectors at once; the
AR reads each distinct text once), then computes every figure in `hubkit.eval`: round trip with
and without unparsed AV outputs, noise floor, content sensitivity, identification, diversity. With
`out_dir` it writes ``rows.parquet``, PNG plots and ``eval.json`` (hashes of everything it read and wrote).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hubkit import constants as C
from hubkit.errors import DataError, MetaError
from hubkit.eval import plots as P
from hubkit.eval.ablations import content_sensitivity, reconstruct_unique
from hubkit.eval.diversity import diversity
from hubkit.eval.identification import from_ranks, ranks
from hubkit.eval.metrics import DEFAULT_BOOT, cosine_rows, fve, nmse_rows, noise_floor, summarize
from hubkit.eval.report import PLOTS_DIR, ROWS_FILE, EvalReport, checkpoint_record, output_record
from hubkit.eval.table import EvalTable, Overlap, check_against_meta, check_overlap
from hubkit.eval.trend import MIN_POINTS, trend
from hubkit.meta import NLAMeta, check_compatible
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

# Fewest rows the statistics need: bootstrap intervals, a noise floor over other rows and
# identification at top-5 (chance 5/N must leave room above it).
MIN_ROWS = 10
# Identification above chance at this one-sided binomial p-value counts as "reads its vectors".
ID_ALPHA = 0.01
# Loss logs looked for in a run folder (hubkit.train writes metrics.jsonl: one {"step", "loss", …} per line).
LOSS_LOG_NAMES = ("metrics.jsonl", "loss.jsonl", "train_log.jsonl", "log.jsonl")


@dataclass
class Generation:
    """How the AV generated (recorded verbatim in eval.json)."""

    max_new_tokens: int = 64
    batch_size: int = 16
    ar_batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


def select_rows(table: EvalTable, rows: int | None, seed: int) -> tuple[EvalTable, dict]:
    """All rows, or a seeded sample of `rows` of them (kept in file order)."""
    n = len(table)
    if rows is None or rows == n:
        return table, {"method": "all", "n": n}
    if rows < 1 or rows > n:
        raise DataError(f"{table.path}: asked for {rows} rows but the eval table has {n}")
    idx = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    return table.select(idx), {"method": "seeded_sample", "n": rows, "seed": seed}


def nla_record(av: NLAMeta, ar: NLAMeta, shared_base: bool | None = None) -> dict:
    """What was evaluated, from the two metas (the facts a card states next to the numbers)."""
    return {
        "base_model": av.base_model,
        "layer": av.layer,
        "d_model": av.d_model,
        "mse_scale": ar.mse_scale_value(),
        "injection": {"scheme": av.injection.scheme, "scale": av.injection_scale_value()},
        "av_chat_template": av.av.chat_template,
        "ar_num_layers": ar.ar.num_layers,
        "shared_base": shared_base,
        "retracted": {"av": av.retracted is not None, "ar": ar.retracted is not None},
    }


def _round_trip_block(v, v_hat, cos, nmse, mask, n_boot: int, seed: int) -> dict:
    if mask.sum() == 0:
        return {"n": 0, "cos": summarize([]), "nmse": summarize([]), "fve": None}
    return {
        "n": int(mask.sum()),
        "cos": summarize(cos[mask], n_boot=n_boot, seed=seed),
        "nmse": summarize(nmse[mask], n_boot=n_boot, seed=seed + 1),
        "fve": fve(v[mask], v_hat[mask], n_boot=n_boot, seed=seed + 2),
    }


def _records(checkpoints: Mapping[str, str | Path | dict] | None) -> dict:
    if not checkpoints:
        log.warning("no checkpoint folders given: eval.json will not tie its numbers to weight files")
        return {}
    return {k: (v if isinstance(v, dict) else checkpoint_record(v)) for k, v in checkpoints.items()}


def evaluate_pair(
    pair,
    table: EvalTable | str | Path,
    *,
    out_dir: str | Path | None = None,
    rows: int | None = None,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    ar_batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    train_tables: Sequence[str | Path] = (),
    force_overlap: bool = False,
    overlap: Overlap | None = None,
    checkpoints: Mapping[str, str | Path | dict] | None = None,
    n_boot: int = DEFAULT_BOOT,
    min_rows: int = MIN_ROWS,
    plots: bool = True,
    progress: bool = False,
) -> EvalReport:
    """Evaluate `pair` (an `NLAPair`, or anything with ``.av.explain_detailed`` and ``.ar.reconstruct``).

    `checkpoints` maps names (``av``, ``ar``, ``base``) to the folders whose file hashes eval.json
    records. Refuses an eval table that overlaps `train_tables` unless `force_overlap`.
    """
    t_start = time.perf_counter()
    tbl = table if isinstance(table, EvalTable) else EvalTable.read(table)
    check_compatible(pair.av.meta, pair.ar.meta)
    check_against_meta(tbl, pair.av.meta)
    ov = overlap if overlap is not None else check_overlap(tbl, train_tables, force_overlap)
    sel, selection = select_rows(tbl, rows, seed)
    if len(sel) < min_rows:
        raise DataError(
            f"{tbl.path}: {len(sel)} rows evaluated but the statistics need at least {min_rows} (bootstrap "
            "intervals, a noise floor over other rows, top-5 identification); use a larger eval table"
        )
    gen = Generation(max_new_tokens, batch_size, ar_batch_size, do_sample, temperature, top_p)
    v = sel.vectors.float()
    vn = v.numpy().astype(np.float64)

    t0 = time.perf_counter()
    details = pair.av.explain_detailed(
        v,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed if do_sample else None,
        progress=progress,
    )
    t_gen = time.perf_counter() - t0
    texts = [d.text for d in details]
    t0 = time.perf_counter()
    v_hat = reconstruct_unique(pair.ar, texts, ar_batch_size)
    t_ar = time.perf_counter() - t0
    if v_hat.shape != vn.shape:
        raise DataError(
            f"the AR wrote vectors of shape {v_hat.shape[1:]}, the eval vectors are {vn.shape[1:]}"
        )

    t0 = time.perf_counter()
    cs = content_sensitivity(
        pair.ar,
        vn,
        texts,
        seed=seed,
        n_boot=n_boot,
        real_reconstructions=v_hat,
        batch_size=ar_batch_size,
        source="av",
    )
    cs_ref = None
    if sel.explanations is not None:
        cs_ref = content_sensitivity(
            pair.ar,
            vn,
            sel.explanations,
            seed=seed,
            n_boot=n_boot,
            batch_size=ar_batch_size,
            source="reference",
        )
    t_controls = time.perf_counter() - t0

    t0 = time.perf_counter()
    cos, nmse = cosine_rows(vn, v_hat), nmse_rows(vn, v_hat)
    ok = np.array([d.ok for d in details], dtype=bool)
    statuses = {s: 0 for s in ("ok", "no_tags", "unclosed", "empty")}
    for d in details:
        statuses[d.status] = statuses.get(d.status, 0) + 1
    floor = noise_floor(vn, v_hat, seed=seed)
    rank = ranks(vn, v_hat)
    ident = from_ranks(rank)
    div = diversity(texts)
    t_stats = time.perf_counter() - t0

    round_trip = {
        "statuses": statuses,
        "n_excluded": int((~ok).sum()),
        "excluded_means": "AV outputs whose status is not `ok`: empty, or no parsable <explanation> tags",
        "all": _round_trip_block(vn, v_hat, cos, nmse, np.ones_like(ok), n_boot, seed),
        "valid_only": _round_trip_block(vn, v_hat, cos, nmse, ok, n_boot, seed),
        "frac_above_floor": {
            "all": floor.frac_above,
            "valid_only": float(np.mean(cos[ok] > floor.p95)) if ok.any() else None,
        },
    }
    figures = {
        "round_trip": round_trip,
        "noise_floor": floor,
        "content_sensitivity": {"av": cs, "reference": cs_ref},
        "identification": ident,
        "diversity": div,
    }
    verdicts = _verdicts(cs, ident, floor)
    inputs = {
        "table": {
            "path": str(tbl.path) if tbl.path else None,
            "sha256": tbl.sha256,
            "rows_total": len(tbl),
            "rows_evaluated": len(sel),
            "selection": selection,
            "width": tbl.width,
            "has_reference_explanations": sel.explanations is not None,
            "sidecar": {"path": str(tbl.sidecar_path), "sha256": sha256_file(tbl.sidecar_path)}
            if tbl.sidecar_path
            else None,
        },
        "checkpoints": _records(checkpoints),
    }
    report = EvalReport(
        kind="pair",
        seed=seed,
        generation=asdict(gen),
        nla=nla_record(pair.av.meta, pair.ar.meta, getattr(pair, "shared_base", None)),
        inputs=inputs,
        overlap=asdict(ov),
        figures=figures,
        verdicts=verdicts,
        timing={
            "generate_s": t_gen,
            "reconstruct_s": t_ar,
            "controls_s": t_controls,
            "stats_s": t_stats,
            "rows": len(sel),
            "unique_explanations": div.distinct,
        },
        rows=_rows_table(sel, details, cos, nmse, rank, cs, cs_ref),
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.outputs = write_outputs(report, out, cos, ok, floor, rank, ident, cs, cs_ref, plots)
    report.timing["total_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        report.write(out_dir)
    return report


def _verdicts(cs, ident, floor) -> dict:
    """Plain-word verdicts: identification decides "reads its vectors"; the AR's controls are reported beside it."""
    above = any(t.p_value < ID_ALPHA for t in ident.top)
    empty = cs.control("empty")
    t1 = ident.at(1)
    parts = [f"identification top-1 {t1.hits}/{ident.n} vs chance {t1.chance:.3g} (p={t1.p_value:.2g})"]
    if empty.ratio_to_real is not None and abs(cs.real.mean) >= 0.05:
        parts.append(f"the AR reaches {empty.ratio_to_real:.0%} of the round-trip cosine on an empty string")
    parts.append(f"{floor.frac_above:.0%} of rows above the noise floor (p95 {floor.p95:.3f})")
    return {
        "reads_vectors": above,
        "identification": "above_chance" if above else "at_chance",
        "identification_alpha": ID_ALPHA,
        "ar_content": cs.verdict,
        "input_independent_share": empty.ratio_to_real,
        "note": "; ".join(parts),
    }


def _rows_table(sel: EvalTable, details, cos, nmse, rank, cs, cs_ref):
    import pyarrow as pa

    cols = {
        "row": pa.array(sel.indices.astype(np.int64)),
        "doc_id": pa.array(sel.doc_ids, pa.string()),
        "position": pa.array(sel.positions.astype(np.int64)),
        "prefix": pa.array(sel.prefixes, pa.string()),
        "status": pa.array([d.status for d in details], pa.string()),
        "explanation": pa.array([d.text for d in details], pa.string()),
        "raw": pa.array([d.raw for d in details], pa.string()),
        "n_tokens": pa.array([d.n_tokens for d in details], pa.int32()),
        "cos": pa.array(cos),
        "nmse": pa.array(nmse),
        "rank": pa.array(rank.astype(np.int64)),
    }
    for name, values in cs.per_row.items():
        if name != "real":
            cols[f"cos_{name}"] = pa.array(values)
    if cs_ref is not None:
        cols["reference_explanation"] = pa.array(sel.explanations, pa.string())
        for name, values in cs_ref.per_row.items():
            cols[f"reference_cos_{name}"] = pa.array(values)
    return pa.table(cols)


def write_outputs(
    report: EvalReport, out: Path, cos, ok, floor, rank, ident, cs, cs_ref, plots: bool
) -> dict:
    """rows.parquet and the PNG plots; returns their paths (relative to `out`) and sha256 for eval.json."""
    import pyarrow.parquet as pq

    rows_path = out / ROWS_FILE
    pq.write_table(report.rows, str(rows_path))
    outputs: dict = {"rows": output_record(out, rows_path)}
    if plots:
        pdir = out / PLOTS_DIR
        made = {
            "per_row_cosine": P.per_row_cosine(cos, ok, floor, pdir / "per_row_cosine.png"),
            "ablations": P.ablations(cs, pdir / "ablations.png"),
            "identification": P.identification(rank, ident, pdir / "identification.png"),
        }
        if cs_ref is not None:
            made["ablations_reference"] = P.ablations(cs_ref, pdir / "ablations_reference.png")
        outputs["plots"] = {k: output_record(out, p) for k, p in made.items()}
    return outputs


# -- trajectories -----------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    name: str
    path: Path
    meta: NLAMeta
    step: int | None
    loss: float | None


def _step_of(name: str, meta: NLAMeta) -> int | None:
    if meta.training.step is not None:
        return meta.training.step
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


def find_checkpoints(folder: str | Path) -> list[Checkpoint]:
    """Checkpoint subfolders of `folder` (those with an NLA meta), ordered by training step."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such trajectory folder")
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not ((sub / C.META_FILE).is_file() or (sub / C.AR_META_JSON).is_file()):
            continue
        meta = NLAMeta.load(sub)
        found.append(Checkpoint(sub.name, sub, meta, _step_of(sub.name, meta), meta.training.loss))
    found.sort(key=lambda c: (c.step is None, c.step if c.step is not None else 0, c.name))
    return found


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


def loss_curve(
    run_dir: Path, checkpoints: list[Checkpoint], loss_log: str | Path | None
) -> tuple[list, list, dict]:
    """The loss curve for the trend verdict: an explicit or well-known log file, else the checkpoint metas."""
    candidates = (
        [Path(loss_log)]
        if loss_log is not None
        else [d / n for d in (run_dir, *{c.path.parent for c in checkpoints}) for n in LOSS_LOG_NAMES]
    )
    for cand in candidates:
        if cand.is_file() or loss_log is not None:
            steps, losses = read_loss_log(cand)
            if not steps and loss_log is not None:
                raise DataError(f"{cand}: no records with both `step` and `loss` in this loss log")
            if steps:
                return (
                    steps,
                    losses,
                    {"source": str(cand), "sha256": sha256_file(cand), "n_points": len(steps)},
                )
    pts = [(c.step, c.loss) for c in checkpoints if c.step is not None and c.loss is not None]
    return (
        [p[0] for p in pts],
        [p[1] for p in pts],
        {"source": "checkpoint metas (training.step, training.loss)", "n_points": len(pts)},
    )


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
        raise DataError(f"{run_dir}: no checkpoint subfolders (folders holding {C.META_FILE}) to evaluate")
    roles = {c.meta.role for c in cks}
    if len(roles) > 1:
        raise MetaError(f"{run_dir}: mixes AV and AR checkpoints; put them under av/ and ar/ subfolders")
    role = roles.pop()
    if role == "av":
        if ar is not None:
            return [(c, c.path, Path(ar)) for c in cks]
        # GRPO step folders carry the AR they trained against in an `ar/` subfolder.
        if all((c.path / "ar" / C.META_FILE).is_file() for c in cks):
            return [(c, c.path, c.path / "ar") for c in cks]
        raise DataError(f"{run_dir}: its checkpoints are AVs; give the AR to pair them with (--ar)")
    if av is None:
        raise DataError(f"{run_dir}: its checkpoints are ARs; give the AV to pair them with (--av)")
    return [(c, Path(av), c.path) for c in cks]


def base_record(av_dir: Path, ar_dir: Path, base_model: str | None) -> dict | None:
    """Hashes of the base-model folder when either half is an adapter over a local base, else ``None``."""
    from hubkit import loading

    adapters = [d for d in (av_dir, ar_dir) if loading.is_adapter(d)]
    if not adapters:
        return None
    base = loading.resolve_base(base_model or NLAMeta.load(adapters[0]).base_model)
    return checkpoint_record(base) if Path(base).is_dir() else {"path": base, "files": {}}


def load_pair(
    av_dir: Path,
    ar_dir: Path,
    base_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
):
    from hubkit.pair import NLAPair

    return NLAPair.from_pretrained(av=av_dir, ar=ar_dir, base_model=base_model, device=device, dtype=dtype)


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
    seed: int = 0,
    plots: bool = True,
    **eval_kwargs,
) -> EvalReport:
    """Evaluate every checkpoint of a trajectory, and give the trend verdict on its loss curve.

    `run_dir` holds checkpoint folders (``step_000050`` …) of one half (the other half is `av` or
    `ar`, or, for GRPO steps, each step's own ``ar/`` subfolder), or ``av/`` and ``ar/`` folders
    whose checkpoints are paired by name. The loss curve is `loss_log`, else the run's
    ``metrics.jsonl``, else the checkpoints' ``training.step``/``training.loss``. Each checkpoint's
    full eval goes to ``out_dir/<name>/``; the top-level eval.json summarises them.
    """
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    plan = _plan(run_dir, av, ar)
    tbl = table if isinstance(table, EvalTable) else EvalTable.read(table)
    ov = check_overlap(tbl, train_tables, force_overlap)
    out = Path(out_dir) if out_dir is not None else None
    # The fixed half and the base are hashed once, not once per checkpoint.
    fixed = {k: checkpoint_record(p) for k, p in (("av", av), ("ar", ar)) if p is not None}
    base_rec = base_record(plan[0][1], plan[0][2], base_model)
    points, generation, last = [], None, None
    for ck, av_dir, ar_dir in plan:
        pair = load_pair(av_dir, ar_dir, base_model, device, dtype)
        recs = {k: fixed.get(k) or checkpoint_record(p) for k, p in (("av", av_dir), ("ar", ar_dir))}
        if base_rec is not None:
            recs["base"] = base_rec
        sub = out / ck.name if out is not None else None
        rep = evaluate_pair(
            pair, tbl, out_dir=sub, seed=seed, overlap=ov, checkpoints=recs, plots=plots, **eval_kwargs
        )
        last = (pair.av.meta, pair.ar.meta, pair.shared_base)
        del pair
        points.append(_point(ck, recs, rep, out, sub))
        generation = rep.generation
    steps, losses, source = loss_curve(run_dir, [p[0] for p in plan], loss_log)
    tr, note = None, None
    if len(steps) >= MIN_POINTS:
        tr = trend(steps, losses)
    else:
        note = f"no trend verdict: the loss curve has {len(steps)} point(s), a verdict needs {MIN_POINTS}"
        log.warning("%s: %s", run_dir, note)
    figures = {
        "trajectory": {
            "checkpoints": points,
            "loss_curve": {**source, "steps": steps, "losses": losses},
            "trend": tr,
            "trend_note": note,
        }
    }
    side = tbl.sidecar_path
    inputs = {
        "trajectory": str(run_dir),
        "table": {
            "path": str(tbl.path) if tbl.path else None,
            "sha256": tbl.sha256,
            "rows_total": len(tbl),
            "sidecar": {"path": str(side), "sha256": sha256_file(side)} if side else None,
        },
        "checkpoints": {
            **{f"fixed_{k}": v for k, v in fixed.items()},
            **({"base": base_rec} if base_rec else {}),
        },
    }
    report = EvalReport(
        kind="trajectory",
        seed=seed,
        generation=generation,
        nla=nla_record(*last),
        inputs=inputs,
        overlap=asdict(ov),
        figures=figures,
        verdicts={"trend": tr.verdict if tr else None, "reads_vectors_last": points[-1]["reads_vectors"]},
        timing={"total_s": time.perf_counter() - t_start, "checkpoints": len(points)},
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report.outputs = {"checkpoints": {p["name"]: p["eval_json"] for p in points}}
        if plots:
            xs = [p["step"] if p["step"] is not None else i for i, p in enumerate(points)]
            path = P.trajectory(
                xs,
                [p["cos"] for p in points],
                [p["noise_floor_p95"] for p in points],
                (steps, losses),
                tr,
                out / PLOTS_DIR / "trajectory.png",
            )
            report.outputs["plots"] = {"trajectory": output_record(out, path)}
        report.write(out)
    return report


def _point(ck: Checkpoint, recs: dict, rep: EvalReport, out: Path | None, sub: Path | None) -> dict:
    """One checkpoint's headline figures for the trajectory summary."""
    fig = rep.figures
    rt = fig["round_trip"]
    ident = fig["identification"]
    return {
        "name": ck.name,
        "step": ck.step,
        "loss": ck.loss,
        "av": recs["av"],
        "ar": recs["ar"],
        "eval_json": output_record(out, sub / C.EVAL_FILE) if sub is not None else None,
        "cos": asdict(rt["all"]["cos"]),
        "fve": asdict(rt["all"]["fve"]) if rt["all"]["fve"] is not None else None,
        "cos_valid_only": asdict(rt["valid_only"]["cos"]),
        "n_excluded": rt["n_excluded"],
        "noise_floor_p95": fig["noise_floor"].p95,
        "frac_above_floor": fig["noise_floor"].frac_above,
        "identification": {f"top{t.k}": t.accuracy for t in ident.top}
        | {f"chance_top{t.k}": t.chance for t in ident.top},
        "ar_content": rep.verdicts["ar_content"],
        "reads_vectors": rep.verdicts["reads_vectors"],
        "distinct_frac": fig["diversity"].distinct_frac,
    }
