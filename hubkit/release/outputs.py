"""The eval outputs a release cites: eval.json itself, its plots and per-checkpoint reports, each
copied only when its sha256 is the one eval.json recorded."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubkit import constants
from hubkit.constants import PLOTS_DIR
from hubkit.errors import DataError
from hubkit.eval.report import EvalReport, read_eval_json, typed_report
from hubkit.provenance import sha256_file
from hubkit.release.errors import HonestyError, ReleaseError
from hubkit.release.spec import LoadedSpec


@dataclass(frozen=True)
class CitedEval:
    """An eval.json a release cites: typed (what release code reads), as JSON (what a card prints), and where."""

    report: EvalReport
    data: dict
    path: Path


def read_eval(ls: LoadedSpec, field_name: str = "eval", kind: str | None = None) -> CitedEval:
    """The eval.json a spec field names (a file or the folder holding it), optionally of one `kind`."""
    value = getattr(ls.spec, field_name)
    assert value is not None
    path = ls.existing(value, field_name)
    path = path / constants.EVAL_FILE if path.is_dir() else path
    try:
        ev = read_eval_json(path)
    except DataError as exc:
        raise ReleaseError(f"{ls.path}: field `{field_name}`: {exc}") from exc
    try:
        report = typed_report(ev, path)
    except DataError as exc:  # a figure missing or mistyped: the card would print an empty or invented number
        raise HonestyError(f"{exc}. Or release without this eval") from exc
    bad = non_finite(ev)
    if bad is not None:
        raise HonestyError(
            f"{path}: figure `{bad[0]}` is {bad[1]}; a card never shows a non-finite number. Re-run "
            "`hubkit eval` (it writes finite figures or stops), or release without this eval"
        )
    prov = ev.get("provenance")
    if not isinstance(prov, dict) or not prov.get("git") or not prov.get("libraries"):
        raise HonestyError(
            f"{path}: no `provenance` (git commit, library versions) recorded; the card's numbers could not "
            "be traced to the code that computed them. Re-run `hubkit eval`"
        )
    if kind is not None and ev.get("kind") != kind:
        how = "`hubkit eval --trajectory RUN`" if kind == "trajectory" else "`hubkit eval --av … --ar …`"
        raise ReleaseError(
            f"{ls.path}: field `{field_name}`: {path} is a {ev.get('kind')!r} eval; a `{ls.spec.kind}` "
            f"release cites a {kind} eval ({how})"
        )
    return CitedEval(report, ev, path)


def non_finite(data: Any, where: str = "") -> tuple[str, float] | None:
    """The dotted path and value of the first NaN or infinite number in `data`, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "(top level)", data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        sub = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip(".")
        found = non_finite(value, sub)
        if found is not None:
            return found
    return None


def copy_output(eval_path: Path, record: dict, dest: Path, what: str) -> Path:
    """Copy an eval output (plot, per-checkpoint eval.json) after checking the sha256 eval.json recorded."""
    src = eval_path.parent / record["path"]
    if not src.is_file():
        raise HonestyError(f"{src}: {what} listed in {eval_path} is missing; re-run `hubkit eval`")
    if sha256_file(src) != record["sha256"]:
        raise HonestyError(
            f"{src}: {what} differs from the sha256 {eval_path} recorded; it was not made by this "
            "eval. Re-run `hubkit eval`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def copy_plots(ev: dict, eval_path: Path, dest: Path) -> list[dict]:
    """Copy every plot eval.json lists into ``dest/plots``; ``[{name, path}]`` for the card."""
    plots = (ev.get("outputs") or {}).get("plots") or {}
    out = []
    for name, rec in sorted(plots.items()):
        target = dest / PLOTS_DIR / Path(rec["path"]).name
        copy_output(eval_path, rec, target, f"plot {name!r}")
        out.append({"name": name.replace("_", " "), "path": f"{PLOTS_DIR}/{target.name}"})
    return out
