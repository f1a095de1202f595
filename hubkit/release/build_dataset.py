"""Bundle a dataset release: parquet tables and their sidecars, with a card built from the sidecars."""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict
from pathlib import Path

from hubkit import constants
from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.errors import DataError
from hubkit.provenance import git_state, sha256_file
from hubkit.release import cards
from hubkit.release.context import common_context
from hubkit.release.errors import HonestyError, ReleaseError
from hubkit.release.provenance import RepoTarget, credit_for, parents, table_info, write_provenance
from hubkit.release.public import dataset_names, publish_json
from hubkit.release.spec import LoadedSpec
from hubkit.schema import to_dict

DATA_DIR = "data"


def _table(path: Path, side, info: dict, rel: str, credit) -> dict:
    """What the dataset card says about one table (sidecar blocks with the optional keys filled)."""
    import pyarrow.parquet as pq

    sd = to_dict(side)
    return {
        "path": rel,
        "table": side.table,
        "rows": info["rows"],
        "columns": list(pq.ParquetFile(str(path)).schema_arrow.names),
        "sha256": info["sha256"],
        "extraction": {**{"positions_per_doc": None}, **sd["extraction"]},
        "corpus": {
            "sha256": None,
            "n_docs": None,
            **sd["corpus"],
            "title": credit.name or side.corpus.name,
            "license": credit.license,
            "url": credit.url,
            "attribution": credit.attribution,
        },
        "split": side.split
        and {"name": side.split.name, "seed": side.split.seed, "fractions": side.split.fractions},
        "labeling": side.labeling
        and {"cache_hits": 0, "first_labeled_at": None, "last_labeled_at": None, **asdict(side.labeling)},
        "git_commit": side.git_commit,
        "hubkit_version": side.hubkit_version,
    }


def _checked_sidecar(path: Path, info: dict):

    try:
        side = read_sidecar(path)
    except DataError as exc:
        raise HonestyError(f"{path}: the dataset card needs the table's sidecar: {exc}") from exc
    recorded = side.files.get(path.name)
    if recorded is not None and recorded != info["sha256"]:
        raise HonestyError(
            f"{sidecar_path(path)}: records sha256 {recorded[:12]}… for {path.name} but the file has "
            f"{info['sha256'][:12]}…; the sidecar describes another table. Re-run the stage that made it"
        )
    if side.rows != info["rows"]:
        raise HonestyError(
            f"{sidecar_path(path)}: records {side.rows} rows but {path} has {info['rows']}; the card "
            "would state a wrong row count. Re-run the stage that made it"
        )
    return side


def build_dataset(ls: LoadedSpec, out: Path, cards_dir: Path | None) -> list[RepoTarget]:
    """Check each table against its sidecar, copy both, and write the dataset card."""
    spec = ls.spec
    assert spec.license is not None  # the spec requires it for a dataset
    target = RepoTarget("dataset", spec.repos["dataset"], "dataset", "dataset", spec.tag, spec.private)
    dest = out / target.folder
    tables, configs, sources, sidecars = [], [], {}, []
    for i, value in enumerate(spec.data_files):
        path = ls.existing(value, f"data_files[{i}]", "file")
        if path.suffix != ".parquet":
            raise ReleaseError(f"{ls.path}: field `data_files[{i}]`: {path} is not a .parquet table")
        info = table_info(path)
        side = _checked_sidecar(path, info)
        rel = f"{DATA_DIR}/{path.name}"
        if rel in sources:
            raise ReleaseError(f"{ls.path}: field `data_files[{i}]`: two tables are named {path.name}")
        (dest / DATA_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        shutil.copyfile(sidecar_path(path), dest / f"{rel}.json")
        sources[rel] = {"from": str(path), "sha256": info["sha256"], "how": "copy"}
        sources[f"{rel}.json"] = {
            "from": str(sidecar_path(path)),
            "sha256": sha256_file(sidecar_path(path)),
            "how": "copy",
        }
        configs.append({"split": re.sub(r"\W", "_", path.name[: -len(".parquet")]), "path": rel})
        credit = credit_for(side, ls, f"data_files[{i}]", path.name)
        tables.append(_table(path, side, info, rel, credit))
        sidecars.append(side)
    names = dataset_names(ls, sidecars)
    tables = names.public_tree(tables)  # the card prints the sidecars' values: no local paths
    for rel in [r for r in sources if r.endswith(".json")]:
        rec = publish_json(dest / rel, names)
        if rec is not None:
            sources[rel] = {"from": sources[rel]["from"], **rec}
    total = sum(t["rows"] for t in tables)
    context = {
        **common_context(ls, git_state()),
        "title": spec.card.title or target.repo_id.split("/")[-1],
        "license": spec.license,
        "tables": tables,
        "total_rows": total,
    }
    card = cards.dataset_card(
        context,
        license=spec.license,
        tags=spec.card.tags,
        language=spec.card.language,
        configs=[{"config_name": "default", "data_files": configs}],
        rows=total,
        pretty_name=spec.card.title,
        cards_dir=cards_dir,
    )
    (dest / constants.CARD_FILE).write_text(card)
    write_provenance(
        dest,
        ls,
        target,
        {
            "sources": sources,
            "tables": [{k: t[k] for k in ("path", "table", "rows", "sha256")} for t in tables],
            "parents": parents(ls, None, None, None),
        },
        names=names,
    )
    return [target]
