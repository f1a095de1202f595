"""What a bundle records: its manifest (``release.json``, which folder goes to which repo, not pushed),
each folder's ``provenance.json`` (release, repo, every file's sha256, code, eval, data, parents) and
the attribution of the training data.

A table's sidecar (``<table>.parquet.json``) names the corpus it was drawn from and the labelers that
wrote its explanations. The corpus's licence and URL come from the spec's ``corpora.<name>``, else from
the corpora hubkit ships; a table whose corpus has no licence anywhere is refused, since the card would
publish data without saying under which terms.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubkit import constants
from hubkit.constants import BUNDLE_SCHEMA, PROVENANCE_SCHEMA
from hubkit.constants import RELEASE_MANIFEST_FILE as MANIFEST_FILE
from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.errors import DataError
from hubkit.meta import NLAMeta
from hubkit.provenance import git_state, library_versions, sha256_file, sha256_files
from hubkit.release.errors import ReleaseError
from hubkit.release.public import PublicNames
from hubkit.release.spec import CorpusCredit, LoadedSpec


@dataclass
class RepoTarget:
    """One repo of a release and the bundle folder that holds its files."""

    role: str
    repo_id: str
    repo_type: str
    folder: str
    tag: str
    private: bool = False


@dataclass
class Bundle:
    """A built release: where it lies and which folder goes to which repo."""

    root: Path
    name: str
    kind: str
    tag: str
    targets: list[RepoTarget]
    spec_sha256: str
    schema: str = BUNDLE_SCHEMA

    def folder(self, target: RepoTarget) -> Path:
        return self.root / target.folder

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "root"}
        (self.root / MANIFEST_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, root: str | Path) -> Bundle:
        root = Path(root)
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise ReleaseError(
                f"{root}: not a release bundle (no {MANIFEST_FILE}); build one with `hubkit release NAME`"
            )
        try:
            data = json.loads(path.read_text())
            if data.get("schema") != BUNDLE_SCHEMA:
                raise ReleaseError(
                    f"{path}: field `schema` is {data.get('schema')!r}; expected {BUNDLE_SCHEMA!r}"
                )
            data["targets"] = [RepoTarget(**t) for t in data["targets"]]
            return cls(root=root, **data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ReleaseError(f"{path}: not a valid bundle manifest ({exc})") from exc


def table_info(path: Path) -> dict:
    """``{name, path, sha256, rows}`` of a data file (rows for parquet, else None)."""
    info: dict[str, Any] = {"name": path.name, "path": str(path), "sha256": sha256_file(path), "rows": None}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        info["rows"] = pq.ParquetFile(str(path)).metadata.num_rows
    return info


def eval_summary(ev: dict, eval_path: Path) -> dict:
    """What provenance.json records about the eval behind the card."""
    table = ev.get("inputs", {}).get("table", {})
    return {
        "file": constants.EVAL_FILE,
        "source": str(eval_path),
        "sha256": sha256_file(eval_path),
        "schema": ev.get("schema"),
        "kind": ev.get("kind"),
        "created": ev.get("created"),
        "table": {k: table.get(k) for k in ("sha256", "rows_total", "sidecar")},
        "overlap_checked": (ev.get("overlap") or {}).get("checked"),
    }


def parents(ls: LoadedSpec, base_id: str | None, meta: NLAMeta | None, role: str | None) -> list[dict]:
    """The repos this one derives from: its base, the other half of its pair, the spec's `parents`."""
    out = []
    if base_id is not None:
        out.append(
            {"repo": base_id, "revision": meta.base_revision if meta else None, "relation": "base_model"}
        )
    if role in ("av", "ar"):
        other = "ar" if role == "av" else "av"
        if other in ls.spec.repos:
            rev = ls.spec.other_revision()
            out.append({"repo": ls.spec.repos[other], "revision": rev, "relation": f"pair ({other})"})
    out += [asdict(p) for p in ls.spec.parents]
    return out


def write_provenance(dest: Path, ls: LoadedSpec, target: RepoTarget, extra: dict, names: PublicNames) -> None:
    """Write ``provenance.json`` last: it hashes every other file of the folder. Local paths in `extra`
    are written as the release publishes them (`names`)."""
    extra = names.public_tree(extra)
    files = sha256_files(dest)
    files.pop(constants.PROVENANCE_FILE, None)
    body = {
        "schema": PROVENANCE_SCHEMA,
        "release": {
            "name": ls.name,
            "kind": ls.spec.kind,
            "tag": ls.spec.tag,
            "spec": {"file": ls.path.name, "sha256": ls.sha256},
        },
        "repo": {"id": target.repo_id, "type": target.repo_type, "role": target.role},
        "files": {rel: {"sha256": sha, "size": (dest / rel).stat().st_size} for rel, sha in files.items()},
        "code": {
            "hubkit_git": git_state(),
            "project_git": git_state(ls.root),
            "libraries": library_versions(),
        },
        **extra,
    }
    (dest / constants.PROVENANCE_FILE).write_text(
        json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def provenance_files(folder: str | Path) -> dict[str, str]:
    """``{path: sha256}`` that a bundle folder's provenance.json records."""
    path = Path(folder) / constants.PROVENANCE_FILE
    if not path.is_file():
        raise ReleaseError(f"{folder}: no {constants.PROVENANCE_FILE}; rebuild the bundle")
    return {rel: rec["sha256"] for rel, rec in json.loads(path.read_text())["files"].items()}


# Corpora that ship with hubkit (hubkit/corpus/README.md states the licence).
KNOWN_CORPORA: dict[str, CorpusCredit] = {
    "bundled": CorpusCredit(
        license="CC0-1.0",
        name="hubkit bundled corpus",
        attribution="written for hubkit; public-domain dedication",
    ),
}
_HEAD = re.compile(r"\[[^\]]*\]$")  # `bundled[:40]`: the first 40 documents of `bundled`


def corpus_key(name: str) -> str:
    """The corpus a sidecar names, without a ``[:n]`` slice."""
    return _HEAD.sub("", name)


def credit_for(side, ls: LoadedSpec, field_name: str, table: str) -> CorpusCredit:
    """The corpus credit of one table's sidecar (the spec's `corpora`, else a known corpus), refused
    (naming the spec field to add) when unknown."""
    key = corpus_key(side.corpus.name)
    credit = ls.spec.corpora.get(side.corpus.name) or ls.spec.corpora.get(key) or KNOWN_CORPORA.get(key)
    if credit is None:
        raise ReleaseError(
            f"{ls.path}: field `corpora.{key}.license` is needed: {field_name} {table} comes from corpus "
            f"{side.corpus.name!r}, whose sidecar records no licence; add "
            f"`corpora: {{{key}: {{license: <id>, url: <where it is published>}}}}`"
        )
    return credit


def training_data(ls: LoadedSpec) -> list[dict]:
    """``[{name, path, sha256, rows, corpus, license, url, attribution, labelers}]`` per training table.

    Tables without a sidecar are listed with ``corpus: None`` (their origin is not recorded).
    """
    out = []
    for i, value in enumerate(ls.spec.training_data):
        path = ls.existing(value, f"training_data[{i}]", "file")
        info = table_info(path) | dict.fromkeys(("corpus", "license", "url", "attribution", "labelers"))
        if sidecar_path(path).is_file():
            try:
                side = read_sidecar(path)
            except DataError as exc:
                raise ReleaseError(f"{ls.path}: field `training_data[{i}]`: {exc}") from exc
            credit = credit_for(side, ls, "training table", Path(value).name)
            info.update(
                corpus=credit.name or side.corpus.name,
                license=credit.license,
                url=credit.url,
                attribution=credit.attribution,
                labelers=side.labeling
                and sorted({side.labeling.labeler, side.labeling.auditor} - {"", None}),
            )
        out.append(info)
    return out
