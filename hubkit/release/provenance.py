"""``provenance.json`` of each bundle folder: release, repo, every file's sha256, code, eval, data, parents."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubkit import constants
from hubkit.constants import PROVENANCE_SCHEMA
from hubkit.meta import NLAMeta
from hubkit.provenance import git_state, library_versions, sha256_file, sha256_files
from hubkit.release.errors import ReleaseError
from hubkit.release.manifest import RepoTarget
from hubkit.release.public import PublicNames
from hubkit.release.spec import LoadedSpec


def table_info(path: Path) -> dict:
    """``{name, path, sha256, rows}`` of a data file (rows for parquet, else None)."""
    info: dict[str, Any] = {"name": path.name, "path": str(path), "sha256": sha256_file(path), "rows": None}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        info["rows"] = pq.ParquetFile(str(path)).metadata.num_rows
    return info


def eval_summary(ev: dict | None, eval_path: Path | None) -> dict | None:
    """What provenance.json records about the eval behind the card."""
    if ev is None or eval_path is None:
        return None
    table = ev.get("inputs", {}).get("table", {})
    return {
        "file": constants.EVAL_FILE,
        "source": str(eval_path),
        "sha256": sha256_file(eval_path),
        "schema": ev.get("schema"),
        "kind": ev.get("kind"),
        "created": ev.get("created"),
        "table": {
            "sha256": table.get("sha256"),
            "rows_total": table.get("rows_total"),
            "sidecar": table.get("sidecar"),
        },
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


def write_provenance(
    dest: Path, ls: LoadedSpec, target: RepoTarget, extra: dict, names: PublicNames | None = None
) -> None:
    """Write ``provenance.json`` last: it hashes every other file of the folder. With `names`, local
    paths in `extra` are written as the release publishes them (`hubkit.release.public`)."""
    if names is not None:
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
        **_relative(extra, str(ls.root.resolve())),
    }
    (dest / constants.PROVENANCE_FILE).write_text(
        json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def _relative(obj: Any, root: str) -> Any:
    """Paths under the project root written relative to it, so provenance does not depend on where it lies."""
    if isinstance(obj, dict):
        return {k: _relative(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith(root + os.sep):
        return Path(obj).relative_to(root).as_posix()
    return obj


def provenance_files(folder: str | Path) -> dict[str, str]:
    """``{path: sha256}`` that a bundle folder's provenance.json records."""
    path = Path(folder) / constants.PROVENANCE_FILE
    if not path.is_file():
        raise ReleaseError(f"{folder}: no {constants.PROVENANCE_FILE}; rebuild the bundle")
    return {rel: rec["sha256"] for rel, rec in json.loads(path.read_text())["files"].items()}
