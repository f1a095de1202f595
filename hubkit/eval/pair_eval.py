"""Evaluate one NLA pair on a held-out eval table: the round trip batched (the AV generates for a batch of
vectors at once; the AR reads each distinct text once), then every figure of `hubkit.eval`."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from hubkit import processes
from hubkit.constants import PLOTS_DIR
from hubkit.errors import DataError
from hubkit.eval import plots
from hubkit.eval.ablations import content_sensitivity, reconstruct_unique
from hubkit.eval.diversity import diversity
from hubkit.eval.extras import Extras, Produced, row_columns
from hubkit.eval.generation import Generation
from hubkit.eval.identification import from_ranks, ranks
from hubkit.eval.metrics import DEFAULT_BOOT, cosine_rows, nmse_rows, noise_floor
from hubkit.eval.overlap import Overlap, check_overlap
from hubkit.eval.report import (
    ROWS_FILE,
    EvalReport,
    checkpoint_records,
    nla_record,
    output_record,
    table_record,
)
from hubkit.eval.results_file import save_results
from hubkit.eval.sections import (
    ContentSensitivities,
    FloorShare,
    PairFigures,
    RoundTrip,
    RoundTripAll,
    Verdicts,
)
from hubkit.eval.table import EvalTable, check_against_meta, select_rows
from hubkit.eval.trained_on import from_halves, record_folders
from hubkit.eval.yardstick import round_trip_block
from hubkit.meta import check_compatible
from hubkit.verbalizer import DEFAULT_BATCH_SIZE, Explanation

log = logging.getLogger(__name__)

# Identification above chance at this one-sided binomial p-value counts as "reads its vectors".
ID_ALPHA = 0.01


def evaluate_pair(
    pair,
    table: EvalTable | str | Path,
    *,
    generation: Generation = Generation(),
    out_dir: str | Path | None = None,
    rows: int | None = None,
    train_tables: Sequence[str | Path] = (),
    force_overlap: bool = False,
    overlap: Overlap | None = None,
    checkpoints: Mapping[str, str | Path | dict] | None = None,
    n_boot: int = DEFAULT_BOOT,
    plots: bool = True,
    progress: bool = False,
    extras: Extras | None = None,
) -> EvalReport:
    """Evaluate `pair` (an `NLAPair`, or anything with ``.av.explain_detailed`` and ``.ar.reconstruct``)
    on `rows` of `table` (all by default), generating as `generation` says. `checkpoints` maps names
    (``av``, ``ar``, ``base``) to the folders whose file hashes eval.json records. Refuses an eval table
    that overlaps `train_tables` unless `force_overlap`. `extras` adds the optional sections; an
    incompatible cross-pair half is refused before anything runs."""
    t_start = time.perf_counter()
    tbl = table if isinstance(table, EvalTable) else EvalTable.read(table)
    check_compatible(pair.av.meta, pair.ar.meta)
    check_against_meta(tbl, pair.av.meta)
    if extras is not None:
        extras.check(pair, tbl)
    if overlap is None:
        # what the halves were trained on: from their folders' metas and runs when given, else the loaded metas
        folders = record_folders(checkpoints)
        trained = from_halves({n: folders.get(n) or h for n, h in (("av", pair.av), ("ar", pair.ar))})
        trained += extras.trained_on() if extras is not None else []
        overlap = check_overlap(tbl, train_tables, force_overlap, trained)
    ov, gen, seed = overlap, generation, generation.seed
    sel, selection = select_rows(tbl, rows, seed)
    v = sel.vectors.float()
    vn = v.numpy().astype(np.float64)

    t0 = time.perf_counter()
    details = generate_shared(gen, pair.av, v, progress)  # batches shared among processes
    t_gen = time.perf_counter() - t0
    texts = [d.text for d in details]
    t0 = time.perf_counter()
    v_hat = reconstruct_shared(pair.ar, texts, gen.ar_batch_size)
    t_ar = time.perf_counter() - t0
    if v_hat.shape != vn.shape:
        raise DataError(
            f"the AR wrote vectors of shape {v_hat.shape[1:]}, the eval vectors are {vn.shape[1:]}"
        )

    t0 = time.perf_counter()
    stats = {"seed": seed, "n_boot": n_boot, "batch_size": gen.ar_batch_size}
    cs = content_sensitivity(pair.ar, vn, texts, real_reconstructions=v_hat, source="av", **stats)
    cs_ref = None
    if sel.explanations is not None:
        cs_ref = content_sensitivity(pair.ar, vn, sel.explanations, source="reference", **stats)
    sections = extras.run(Produced(pair, sel, details, v_hat, gen, n_boot, progress)) if extras else {}
    t_controls = time.perf_counter() - t0

    t0 = time.perf_counter()
    cos, nmse = cosine_rows(vn, v_hat), nmse_rows(vn, v_hat)
    ok = np.array([d.ok for d in details], dtype=bool)
    statuses = dict.fromkeys(("ok", "no_tags", "unclosed", "empty"), 0) | Counter(d.status for d in details)
    floor = noise_floor(vn, v_hat, seed=seed)
    rank = ranks(vn, v_hat)
    ident = from_ranks(rank)
    div = diversity(texts)
    t_stats = time.perf_counter() - t0

    round_trip = RoundTrip(
        statuses=statuses,
        n_excluded=int((~ok).sum()),
        excluded_means="AV outputs whose status is not `ok`: empty, or no parsable <explanation> tags",
        all=round_trip_block(vn, v_hat, cos, nmse, np.ones_like(ok), n_boot, seed, RoundTripAll),
        valid_only=round_trip_block(vn, v_hat, cos, nmse, ok, n_boot, seed),
        frac_above_floor=FloorShare(
            all=floor.frac_above, valid_only=float(np.mean(cos[ok] > floor.p95)) if ok.any() else None
        ),
    )
    figures = PairFigures(
        round_trip=round_trip,
        noise_floor=floor,
        content_sensitivity=ContentSensitivities(av=cs, reference=cs_ref),
        identification=ident,
        diversity=div,
        **sections,
    )
    report = EvalReport(
        kind="pair",
        seed=seed,
        generation=gen.record(pair.av.meta.injection.scheme),
        nla=nla_record(pair.av.meta, pair.ar.meta, getattr(pair, "shared_base", None)),
        inputs={"table": table_record(tbl, sel, selection), "checkpoints": checkpoint_records(checkpoints)},
        overlap=asdict(ov),
        figures=figures,
        verdicts=_verdicts(cs, ident, floor),
        timing={
            "generate_s": t_gen,
            "reconstruct_s": t_ar,
            "controls_s": t_controls,
            "stats_s": t_stats,
            "rows": len(sel),
            "unique_explanations": div.distinct,
        },
        rows=_rows_table(sel, details, cos, nmse, rank, cs, cs_ref, sections),
    )
    write_report(
        report, out_dir, t_start, (lambda pdir: _plots(pdir, figures, cos, ok, rank)) if plots else None
    )
    return report


def write_report(
    report: EvalReport, out_dir: str | Path | None, t_start: float, draw: Callable[[Path], dict] | None
) -> None:
    """rows.parquet (when the report has rows), the `evaluate` results file and the plots `draw(folder)` makes,
    then eval.json with the sha256 of each; rank 0 writes (every process holds the same report)."""
    write = out_dir is not None and processes.is_main()
    if write:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if report.rows is not None:
            pq.write_table(report.rows, str(out / ROWS_FILE))
            report.outputs["rows"] = output_record(out, out / ROWS_FILE)
        report.outputs["evaluate"] = output_record(out, save_results(report, out))
        if draw is not None:
            report.outputs["plots"] = {k: output_record(out, p) for k, p in draw(out / PLOTS_DIR).items()}
    report.timing["total_s"] = time.perf_counter() - t_start
    if write:
        report.write(out)
    processes.barrier()


def _verdicts(cs, ident, floor) -> Verdicts:
    """Plain-word verdicts: identification decides "reads its vectors"; the AR's controls are reported beside it."""
    above = any(t.p_value < ID_ALPHA for t in ident.top)
    empty = cs.control("empty")
    t1 = ident.at(1)
    parts = [f"identification top-1 {t1.hits}/{ident.n} vs chance {t1.chance:.3g} (p={t1.p_value:.2g})"]
    if empty.ratio_to_real is not None and abs(cs.real.mean) >= 0.05:
        parts.append(f"the AR reaches {empty.ratio_to_real:.0%} of the round-trip cosine on an empty string")
    parts.append(f"{floor.frac_above:.0%} of rows above the noise floor (p95 {floor.p95:.3f})")
    return Verdicts(
        reads_vectors=above,
        identification="above_chance" if above else "at_chance",
        identification_alpha=ID_ALPHA,
        ar_content=cs.verdict,
        input_independent_share=empty.ratio_to_real,
        note="; ".join(parts),
    )


def _rows_table(sel: EvalTable, details, cos, nmse, rank, cs, cs_ref, sections):
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
    cols |= {f"cos_{name}": pa.array(values) for name, values in cs.per_row.items() if name != "real"}
    if cs_ref is not None:
        cols["reference_explanation"] = pa.array(sel.explanations, pa.string())
        cols |= {f"reference_cos_{name}": pa.array(values) for name, values in cs_ref.per_row.items()}
    return pa.table(cols | row_columns(sections))


def _plots(pdir: Path, figures: PairFigures, cos, ok, rank) -> dict[str, Path]:
    f = figures
    made = {
        "per_row_cosine": plots.per_row_cosine(cos, ok, f.noise_floor, pdir / "per_row_cosine.png"),
        "ablations": plots.ablations(f.content_sensitivity.av, pdir / "ablations.png"),
        "identification": plots.identification(rank, f.identification, pdir / "identification.png"),
    }
    if f.content_sensitivity.reference is not None:
        made["ablations_reference"] = plots.ablations(
            f.content_sensitivity.reference, pdir / "ablations_reference.png"
        )
    if f.cross_pair is not None:
        made["cross_pair"] = plots.cross_pair(f.cross_pair, pdir / "cross_pair.png")
    return made


# -- the two heavy loops split over a launcher's processes, with results equal to one process -----------
# Each process takes every `world`-th *batch* of rows, so every batch holds the rows it holds in a single
# process (batch composition can move the last bit of a padded forward); results are gathered back in row
# order on every rank. Sampled generation (one random stream) and engines run on rank 0 alone.
AR_BATCH_SIZE = 32  # `ActivationReconstructor.reconstruct`'s own default


def _my_rows(n: int, size: int) -> list[int]:
    """The rows of this process's share of the batches of `size` rows."""
    batches = [list(range(s, min(n, s + size))) for s in range(0, n, size)]
    return [i for b in processes.my_share(batches) for i in b]


def generate_shared(gen: Generation, av, vectors: torch.Tensor, progress: bool) -> list[Explanation]:
    """`gen.run(av, vectors)`, its batches shared among the processes."""
    _, world = processes.rank_world()
    if world == 1:
        return gen.run(av, vectors, progress)
    if gen.do_sample or gen.engine != "transformers":
        return processes.on_main(lambda: gen.run(av, vectors, progress))
    mine = _my_rows(len(vectors), gen.batch_size or DEFAULT_BATCH_SIZE)
    done = gen.run(av, vectors[mine], progress) if mine else []
    out: list[Explanation | None] = [None] * len(vectors)
    for rows, details in processes.gather((mine, done)):
        for i, d in zip(rows, details, strict=True):
            out[i] = d
    return out  # type: ignore[return-value]


def reconstruct_shared(ar, texts: list[str], batch_size: int | None) -> np.ndarray:
    """`reconstruct_unique(ar, texts, batch_size)`, the distinct texts' batches shared among the processes."""
    _, world = processes.rank_world()
    if world == 1 or not texts:
        return reconstruct_unique(ar, texts, batch_size)
    size = batch_size or AR_BATCH_SIZE
    unique = sorted(dict.fromkeys(texts), key=len)  # the order reconstruct_unique batches them in
    mine = _my_rows(len(unique), size)
    part = reconstruct_unique(ar, [unique[i] for i in mine], size) if mine else None
    rows: dict[str, np.ndarray] = {}
    for idx, mat in processes.gather((mine, part)):
        for j, i in enumerate(idx):
            rows[unique[i]] = mat[j]
    return np.stack([rows[t] for t in texts])
