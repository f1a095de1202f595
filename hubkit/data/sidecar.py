"""Dataset sidecars: what made a parquet table, from what, with which hashes (schema ``hubkit.dataset/1``).

Every table hubkit writes has a JSON sidecar beside it named ``<table>.parquet.json``
(`SIDECAR_SUFFIX`). The reference NLA code writes ``kind: nla_dataset`` sidecars (YAML or JSON)
with an ``extraction`` block; `read_sidecar` maps those onto the same dataclass, logging once
what it could not find, so later stages read both the same way.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from hubkit import constants as C
from hubkit.errors import DataError
from hubkit.provenance import git_state, library_versions, sha256_file
from hubkit.schema import SchemaError, from_dict, to_dict

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"  # activations.parquet → activations.parquet.json
LEGACY_KIND = "nla_dataset"

TableKind = Literal["activations", "split", "labeled", "av_sft", "ar_sft", "rl", "eval"]
ExplanationFormat = Literal["plain", "tagged"]


@dataclass
class CorpusInfo:
    """Which corpus the rows come from: a name, the sha256 of its (doc_id, text) sequence, its size."""

    name: str
    sha256: str | None = None
    n_docs: int | None = None


@dataclass
class ExtractionInfo:
    """How the vectors were read: base model and revision, layer (output of block L), sampling."""

    base_model: str
    layer: int
    d_model: int
    revision: str | None = None
    seed: int | None = None
    positions_per_doc: int | None = None
    min_position: int | None = None
    max_length: int | None = None
    add_bos: bool | None = None
    dtype: str | None = None


@dataclass
class SplitInfo:
    """The document split every table after stage 1 belongs to (all splits, so overlap can be checked)."""

    name: str
    fractions: dict[str, float]
    seed: int
    doc_ids: dict[str, list[str]]


@dataclass
class LabelInfo:
    """Labeler provenance summary: models, prompt hash, row counts by status, time range."""

    labeler: str
    auditor: str
    prompt_sha256: str
    status_counts: dict[str, int]
    first_labeled_at: str | None = None
    last_labeled_at: str | None = None


@dataclass
class DatasetSidecar:
    """What one parquet table is and how it was made."""

    table: TableKind
    rows: int
    extraction: ExtractionInfo
    corpus: CorpusInfo
    files: dict[str, str] = field(default_factory=dict)  # file name → sha256
    columns: list[str] = field(default_factory=list)
    split: SplitInfo | None = None
    labeling: LabelInfo | None = None
    explanation_format: ExplanationFormat | None = None
    parents: dict[str, str] = field(default_factory=dict)  # input file name → sha256
    run_sha256: str | None = None  # hash of the settings of the run that wrote the table (resume check)
    git_commit: str | None = None
    hubkit_version: str | None = None
    created: str | None = None
    schema: str = C.DATASET_SCHEMA_VERSION
    legacy: dict[str, Any] | None = None

    def derive(self, **changes: Any) -> DatasetSidecar:
        """A copy for a table made from this one (new time and code version, no run hash; parents set by the
        caller)."""
        fresh = dict(created=now_iso(), git_commit=git_commit(), hubkit_version=hubkit_version())
        cleared = {"files": {}, "parents": {}, "legacy": None, "run_sha256": None}
        return replace(self, **{**cleared, **fresh, **changes})


def sidecar_path(parquet: str | Path) -> Path:
    """Where the sidecar of `parquet` lives: ``<name>.parquet.json`` beside it."""
    parquet = Path(parquet)
    return parquet.with_name(parquet.name + SIDECAR_SUFFIX)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the hubkit checkout in use (``-dirty`` if it has local changes), or None outside git."""
    state = git_state()
    if not state["commit"]:
        return None
    return f"{state['commit']}-dirty" if state["dirty"] else str(state["commit"])


def hubkit_version() -> str | None:
    return library_versions(("hubkit",))["hubkit"]


def write_sidecar(parquet: str | Path, sidecar: DatasetSidecar) -> Path:
    """Write `sidecar` beside `parquet`, recording the parquet's sha256; atomic (tmp then rename)."""
    parquet = Path(parquet)
    sidecar = replace(
        sidecar, files={parquet.name: sha256_file(parquet)}, created=sidecar.created or now_iso()
    )
    path = sidecar_path(parquet)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_dict(sidecar), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_sidecar(parquet_or_sidecar: str | Path) -> DatasetSidecar:
    """The sidecar of a table (pass the parquet or the sidecar itself); hubkit's or the reference dialect."""
    path = Path(parquet_or_sidecar)
    if path.suffix == ".parquet":
        path = sidecar_path(path)
        if not path.exists():
            raise DataError(
                f"{path}: no sidecar beside the table; tables made by hubkit carry one "
                f"(re-run the stage that made it, or write `{path.name}` by hand)"
            )
    if not path.exists():
        raise DataError(f"{path}: no such sidecar file")
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML; reference sidecars may be either
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid JSON/YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    if data.get("kind") == LEGACY_KIND:
        return _from_legacy(data, str(path))
    schema = data.get("schema")
    if schema != C.DATASET_SCHEMA_VERSION:
        raise DataError(
            f"{path}: unknown dataset sidecar schema {schema!r}; expected "
            f"{C.DATASET_SCHEMA_VERSION!r} or a reference sidecar with `kind: {LEGACY_KIND}`"
        )
    try:
        return from_dict(DatasetSidecar, data, where=str(path))
    except SchemaError as exc:
        raise DataError(str(exc)) from exc


_warned_legacy: set[str] = set()


def _from_legacy(data: dict[str, Any], where: str) -> DatasetSidecar:
    """Map a reference ``kind: nla_dataset`` sidecar onto hubkit's dataclass; the rest goes to `legacy`."""
    ext = data.get("extraction")
    if not isinstance(ext, dict):
        raise DataError(f"{where}: field `extraction` is required in a `kind: {LEGACY_KIND}` sidecar")
    missing = [k for k in ("base_model", "d_model", "layer_index") if ext.get(k) is None]
    if missing:
        raise DataError(f"{where}: field `extraction.{missing[0]}` is required but missing")
    corpus = ext.get("corpus")
    corpus_name = corpus.get("name") if isinstance(corpus, dict) else corpus
    rows = data.get("n_rows", data.get("rows", ext.get("n_rows")))
    absent = [k for k in ("seed", "positions_per_doc", "min_position") if ext.get(k) is None]
    if where not in _warned_legacy:
        _warned_legacy.add(where)
        log.info(
            "%s: reference `kind: %s` sidecar read as %s; not recorded there: %s",
            where,
            LEGACY_KIND,
            C.DATASET_SCHEMA_VERSION,
            ", ".join(absent + ([] if rows is not None else ["rows"])) or "nothing",
        )
    try:
        return DatasetSidecar(
            table="activations",
            rows=int(rows) if rows is not None else -1,
            extraction=ExtractionInfo(
                base_model=str(ext["base_model"]),
                layer=int(ext["layer_index"]),
                d_model=int(ext["d_model"]),
                revision=ext.get("revision"),
                seed=ext.get("seed"),
                positions_per_doc=ext.get("positions_per_doc"),
                min_position=ext.get("min_position"),
            ),
            corpus=CorpusInfo(name=str(corpus_name or "unknown")),
            git_commit=data.get("git_commit"),
            legacy=data,
        )
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: malformed `extraction` block ({exc})") from exc
