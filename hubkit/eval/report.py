"""`EvalReport` ↔ ``eval.json`` (schema ``hubkit.eval/1``), and checking a written report against its files.

eval.json carries every figure, the generation settings, the seed, the sha256 of every checkpoint file and of
the eval table, the git commit (and whether the tree was dirty) and library versions, so a card's numbers can
be traced to the exact weights and data; release cards read it, never retype it. Top level: schema, kind
(pair | trajectory | cross_pair), created, seed, generation, nla, inputs{table, checkpoints}, overlap,
figures, verdicts, timing, provenance, outputs (rows.parquet, plots, evaluate results: each {path, sha256};
a trajectory's per-checkpoint eval.json). Figures and verdicts are the typed sections of
`hubkit.eval.sections` (per kind: `KINDS`), which define their layout; optional sections appear only when run.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit import constants, loading
from hubkit.errors import DataError
from hubkit.eval.metrics import to_plain
from hubkit.eval.sections import (
    CrossPairFigures,
    NoVerdicts,
    PairFigures,
    TrajectoryFigures,
    TrajectoryVerdicts,
    Verdicts,
)
from hubkit.eval.table import EvalTable, read_json_object
from hubkit.meta import NLAMeta
from hubkit.provenance import git_state, library_versions, sha256_file, sha256_files
from hubkit.schema import SchemaError, from_dict

log = logging.getLogger(__name__)

EVAL_SCHEMA = "hubkit.eval/1"
ROWS_FILE = "rows.parquet"
# The typed figures and verdicts of each kind of report.
KINDS: dict[str, tuple[type, type]] = {
    "pair": (PairFigures, Verdicts),
    "trajectory": (TrajectoryFigures, TrajectoryVerdicts),
    "cross_pair": (CrossPairFigures, NoVerdicts),
}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def checkpoint_record(path: str | Path) -> dict:
    """``{path, files: {relpath: sha256}}`` for a checkpoint folder (or a single file)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: checkpoint to hash does not exist")
    return {"path": str(p), "files": sha256_files(p)}


@dataclass
class EvalReport:
    """Everything one evaluation measured, ready for eval.json (``rows`` go to parquet, not JSON)."""

    kind: str  # "pair" | "trajectory" | "cross_pair"
    seed: int
    generation: dict
    nla: dict
    inputs: dict
    overlap: dict
    figures: Any  # PairFigures | TrajectoryFigures | CrossPairFigures, as `KINDS` says
    verdicts: Any  # Verdicts | TrajectoryVerdicts | NoVerdicts
    timing: dict
    provenance: dict = field(default_factory=lambda: {"git": git_state(), "libraries": library_versions()})
    created: str = field(default_factory=now)
    outputs: dict = field(default_factory=dict)
    rows: Any = field(default=None, repr=False)  # pyarrow.Table of per-row results
    schema: str = EVAL_SCHEMA

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "rows"}
        return {"schema": d.pop("schema"), **to_plain(d)}

    def write(self, out_dir: str | Path) -> Path:
        """Write ``eval.json`` into `out_dir` (after the rows and plots, whose hashes it records)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / constants.EVAL_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path


def output_record(out_dir: Path, path: Path) -> dict:
    return {"path": path.relative_to(out_dir).as_posix(), "sha256": sha256_file(path)}


def read_eval_json(path: str | Path) -> dict:
    """A written eval.json (or the folder holding it) as parsed JSON, with its schema checked."""
    p = Path(path) / constants.EVAL_FILE if Path(path).is_dir() else Path(path)
    data = read_json_object(p, "eval.json", "no eval.json there; run `hubkit eval` first")
    if data.get("schema") != EVAL_SCHEMA:
        raise DataError(f"{p}: field `schema` is {data.get('schema')!r}; this hubkit reads {EVAL_SCHEMA!r}")
    return data


def read_eval(path: str | Path) -> EvalReport:
    """A written eval.json (or the folder holding it) as the `EvalReport` that wrote it, its figures and
    verdicts the typed sections of its kind; a missing, unknown or mistyped field names the file and field."""
    p = Path(path) / constants.EVAL_FILE if Path(path).is_dir() else Path(path)
    return typed_report(read_eval_json(p), p)


def typed_report(data: dict, p: Path) -> EvalReport:
    """eval.json's parsed `data` (read from `p`) as typed by `read_eval`."""
    if data.get("kind") not in KINDS:
        raise DataError(f"{p}: field `kind` is {data.get('kind')!r}; this hubkit reads {sorted(KINDS)}")
    figures, verdicts = KINDS[data["kind"]]
    try:
        report = from_dict(EvalReport, data, str(p))
        report.figures = from_dict(figures, report.figures, str(p), "figures.")
        report.verdicts = from_dict(verdicts, report.verdicts, str(p), "verdicts.")
    except SchemaError as exc:
        raise DataError(f"{exc}; re-run `hubkit eval` with this hubkit") from exc
    return report


def verify(path: str | Path) -> list[str]:
    """Recompute every hash an eval.json records (table, sidecar, checkpoint files, outputs); list mismatches."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    data = read_eval_json(p)
    problems: list[str] = []

    def check(file: Path, want: str | None, what: str) -> None:
        if want is None:
            return
        if not file.is_file():
            problems.append(f"{what}: {file} is missing")
        elif sha256_file(file) != want:
            problems.append(f"{what}: {file} has changed (sha256 differs from eval.json)")

    inputs = data.get("inputs", {})
    table = inputs.get("table") or {}
    for what, rec in (("eval table", table), ("eval table sidecar", table.get("sidecar") or {})):
        if rec.get("path"):
            check(Path(rec["path"]), rec.get("sha256"), what)
    for name, rec in (inputs.get("checkpoints") or {}).items():
        root = Path(rec["path"])
        for rel, sha in rec.get("files", {}).items():
            check(root / rel if root.is_dir() else root, sha, f"checkpoint {name}")
    for name, rec in _outputs(data.get("outputs", {})):
        check(folder / rec["path"], rec["sha256"], f"output {name}")
    return problems


def _outputs(outputs: dict):
    for name, rec in outputs.items():
        if isinstance(rec, dict) and "sha256" in rec and "path" in rec:
            yield name, rec
        elif isinstance(rec, dict):
            yield from ((f"{name}/{k}", r) for k, r in _outputs(rec))


# -- what an eval read, as eval.json records it ---------------------------------------------------------
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


def checkpoint_records(checkpoints: Mapping[str, str | Path | dict] | None) -> dict:
    if not checkpoints:
        log.warning("no checkpoint folders given: eval.json will not tie its numbers to weight files")
        return {}
    return {k: (v if isinstance(v, dict) else checkpoint_record(v)) for k, v in checkpoints.items()}


def base_record(av_dir: Path, ar_dir: Path, base_model: str | None) -> dict | None:
    """Hashes of the base-model folder when either half is an adapter over a local base, else ``None``."""
    adapters = [d for d in (av_dir, ar_dir) if loading.is_adapter(d)]
    if not adapters:
        return None
    base = loading.resolve_base(base_model or NLAMeta.load(adapters[0]).base_model)
    return checkpoint_record(base) if Path(base).is_dir() else {"path": base, "files": {}}


def table_record(table: EvalTable, selected: EvalTable | None = None, selection: dict | None = None) -> dict:
    """The eval table as eval.json records it: where, its hash, its sidecar and, given, which rows were read."""
    rec: dict = {
        "path": str(table.path) if table.path else None,
        "sha256": table.sha256,
        "rows_total": len(table),
    }
    if selected is not None:
        rec |= {"rows_evaluated": len(selected), "selection": selection, "width": table.width}
        rec["has_reference_explanations"] = selected.explanations is not None
    side = table.sidecar_path
    return rec | {"sidecar": {"path": str(side), "sha256": sha256_file(side)} if side else None}
