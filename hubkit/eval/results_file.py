"""The headline figures of an eval, saved through Hugging Face `evaluate`'s ``save`` (which adds its
provenance fields), for tools that read `evaluate` results; eval.json stays the source of every number a
card prints and records this file's sha256."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubkit.eval.extras import SECTIONS
from hubkit.eval.metrics import to_plain

RESULTS_FILE = "evaluate_results.json"


def round_trip_fields(cos, nmse_mean: float, fv, floor, ident) -> dict[str, Any]:
    """The flat round-trip headline (cosine summary, normalised MSE, FVE, noise floor, top-k against
    chance) that both this file and the `evaluate` module (`evaluate_module.py`) return."""
    out = {"n": cos.n, **{f"cos_{k}": v for k, v in asdict(cos).items() if k != "n"}}
    out |= {"nmse_mean": nmse_mean, "fve": fv.value if fv is not None else None}
    out |= {"fve_baseline_b": fv.baseline_b if fv is not None else None, "noise_floor_p95": floor.p95}
    out |= {"noise_floor_mean": floor.mean, "frac_above_floor": floor.frac_above}
    for t in ident.top:
        out[f"top{t.k}"] = t.accuracy
        out[f"chance_top{t.k}"] = t.chance
    return out


def headline_results(report) -> dict[str, Any]:
    """Flat headline figures of a pair or cross-pair report (plus its sections' headlines, when run)."""
    f = report.figures
    table = report.inputs.get("table") or {}
    out = {"kind": report.kind, "seed": report.seed, "eval_table_sha256": table.get("sha256")}
    if hasattr(f, "round_trip"):
        rt = f.round_trip.all
        out |= round_trip_fields(rt.cos, rt.nmse.mean, rt.fve, f.noise_floor, f.identification)
    for name, section in SECTIONS.items():
        if getattr(f, name, None) is not None:
            out.update(section.results(getattr(f, name)))
    return to_plain(out)


def save_results(report, out_dir: str | Path) -> Path:
    """Write `RESULTS_FILE` into `out_dir` with ``evaluate.save`` (its provenance fields added).

    ``evaluate.save`` asks ``git`` for the commit of the working directory without capturing its
    stderr, so outside a repository git's "fatal: not a git repository" would reach the terminal; the
    child's stderr goes to /dev/null instead (the field is then null, as evaluate intends)."""
    import evaluate

    with _child_stderr_silenced():
        return Path(evaluate.save(str(Path(out_dir) / RESULTS_FILE), **headline_results(report)))


@contextlib.contextmanager
def _child_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the duration (what child processes inherit); where
    there is no descriptor 2 to save, nothing is redirected."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
