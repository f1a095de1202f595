"""A ``kind: cross_pair`` eval: the matrix of `hubkit.eval.cross_pair` on a selected table, hashed and written."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from hubkit.eval.cross_pair import Half, check_cross, cross_pair_matrix, load_half, meta_of
from hubkit.eval.generation import Generation
from hubkit.eval.metrics import DEFAULT_BOOT
from hubkit.eval.overlap import check_overlap
from hubkit.eval.pair_eval import write_report
from hubkit.eval.plots import cross_pair as cross_pair_plot
from hubkit.eval.report import EvalReport, checkpoint_record, nla_record, table_record
from hubkit.eval.sections import CrossPairFigures, NoVerdicts
from hubkit.eval.table import EvalTable, select_rows
from hubkit.eval.trained_on import from_halves


def evaluate_cross_pair(
    avs: Mapping[str, Half],
    ars: Mapping[str, Half],
    table: EvalTable | str | Path,
    *,
    out_dir: str | Path | None = None,
    rows: int | None = None,
    generation: Generation = Generation(),
    n_boot: int = DEFAULT_BOOT,
    train_tables: Sequence[str | Path] = (),
    force_overlap: bool = False,
    base_model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    plots: bool = True,
):
    """A ``kind: cross_pair`` eval: the matrix, the overlap checked, and every half given as a folder hashed
    into ``inputs.checkpoints`` (``av:<name>``, ``ar:<name>``)."""
    t_start = time.perf_counter()
    tbl = table if isinstance(table, EvalTable) else EvalTable.read(table)
    check_cross(avs, ars, tbl)
    folders = {
        f"{role}:{n}": Path(h)
        for role, hs in (("av", avs), ("ar", ars))
        for n, h in hs.items()
        if not hasattr(h, "meta")
    }
    trained = from_halves({f"AV {n}": h for n, h in avs.items()} | {f"AR {n}": h for n, h in ars.items()})
    ov = check_overlap(tbl, train_tables, force_overlap, trained)
    sel, selection = select_rows(tbl, rows, generation.seed)
    loader = functools.partial(load_half, base_model=base_model, device=device, dtype=dtype)
    cp = cross_pair_matrix(avs, ars, sel, generation=generation, n_boot=n_boot, loader=loader)
    first_av, first_ar = next(iter(avs.values())), next(iter(ars.values()))
    report = EvalReport(
        kind="cross_pair",
        seed=generation.seed,
        generation=generation.settings(),
        nla=nla_record(meta_of("", first_av, "av"), meta_of("", first_ar, "ar")),
        inputs={
            "table": table_record(tbl, sel, selection),
            "checkpoints": {k: checkpoint_record(p) for k, p in folders.items()},
        },
        overlap=asdict(ov),
        figures=CrossPairFigures(cp),
        verdicts=NoVerdicts(),
        timing={"rows": len(sel), "cells": len(cp.cells)},
    )
    draw = (lambda pdir: {"cross_pair": cross_pair_plot(cp, pdir / "cross_pair.png")}) if plots else None
    write_report(report, out_dir, t_start, draw)
    return report
