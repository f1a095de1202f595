"""Build a release bundle: one folder per target repo, exactly what will be pushed, plus a manifest.

``hubkit release NAME --out DIR`` writes::

    DIR/release.json            manifest: repos, repo types, folders, tag (not pushed)
    DIR/av/ ...                 one folder per repo: weights or adapter, tokenizer, nla_meta.yaml,
    DIR/ar/ ...                 value_head.safetensors, eval.json, plots/*.png, README.md, provenance.json,
                                and the legal files of the base family (LICENSE, NOTICE, ...)
    DIR/trajectory/step_*/ ...  (a trajectory: one subfolder per checkpoint)
    DIR/dataset/data/ ...       (a dataset: parquet tables and their sidecars)

One builder per kind (`build_pair` for av, ar and pair, `build_trajectory`, `build_dataset`) checks
its inputs and writes its folders. The bundle is refused (nothing written) when an honesty check fails. It is deterministic: the same
inputs give the same bytes, so pushing a rebuilt, unchanged release uploads nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from hubkit import constants
from hubkit.checkpoint import read_file_hashes, replace_dir, write_file_hashes
from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.errors import CheckpointError, DataError
from hubkit.eval.sections import TrajectoryPoint
from hubkit.export import export_reference
from hubkit.meta import NLAMeta
from hubkit.provenance import sha256_file
from hubkit.release import cards, honesty
from hubkit.release.context import card_base_model, common_context, write_model_repo
from hubkit.release.errors import HonestyError, ReleaseError
from hubkit.release.families import plan_legal
from hubkit.release.plan import PlannedCheckpoint, check_corrections, plan_half, write_half
from hubkit.release.provenance import (
    Bundle,
    RepoTarget,
    credit_for,
    eval_summary,
    parents,
    table_info,
    training_data,
    write_provenance,
)
from hubkit.release.public import dataset_names, find_local_paths, names_for, publish_files, publish_json
from hubkit.release.spec import LoadedSpec, load_spec

log = logging.getLogger(__name__)
DATA_DIR = "data"


def _check_half(ev: dict, eval_path: Path, half: PlannedCheckpoint, role: str) -> None:
    recorded = (ev["inputs"].get("checkpoints") or {}).get(role, {}).get("files", {})
    honesty.check_hashes(half.shipped_sources(), recorded, eval_path, half.source, role.upper())


def _train_eval(ls: LoadedSpec, halves: dict, ev: dict) -> honesty.CitedEval | None:
    """The training-distribution eval: the same checkpoints, another table (checked like the main eval)."""
    if ls.spec.train_eval is None:
        return None
    train = honesty.cite_eval(ls, "pair", "train_eval")
    for role, half in halves.items():
        _check_half(train.data, train.path, half, role)
    if train.report.inputs["table"]["sha256"] == ev["inputs"]["table"]["sha256"]:
        raise HonestyError(
            f"{train.path}: measured the same table as the held-out eval; `train_eval` must be an eval on a "
            "table from the training distribution (e.g. `hubkit eval` on the ar_sft or rl table)"
        )
    honesty.check_required(train.data, ("figures.round_trip.all.fve.value",), train.path)
    return train


def _exports(
    ls: LoadedSpec, halves: dict[str, PlannedCheckpoint], stack: contextlib.ExitStack
) -> dict[str, tuple[PlannedCheckpoint, dict]]:
    """`format: reference`: each half exported (merged, truncated, checked against the measured checkpoint)
    into a temporary folder, planned like a checkpoint; ``{role: (exported half, what the card says)}``."""
    if ls.spec.format != "reference":
        return {}

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hubkit-export-")))
    out = {}
    for role, half in halves.items():
        report = export_reference(half.source, tmp / role, base_model=ls.base_model)
        card = {
            "format": "reference",
            "dtype": report.dtype,
            "max_rel_diff": report.max_rel_diff,
            "tolerance": report.tolerance,
            "greedy_equal": list(report.greedy_equal) if report.greedy_equal else None,
        }
        out[role] = (plan_half(tmp / role, role, f"checkpoints.{role}", ls.path), card)
    return out


def build_pair(
    ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool, stack: contextlib.ExitStack
) -> list[RepoTarget]:
    """Check every half against eval.json, then write one folder per half; returns their targets."""
    spec = ls.spec
    cited = honesty.cite_eval(ls, "pair")
    ev, eval_path = cited.data, cited.path
    honesty.check_card_figures(ev, eval_path, cards.MODEL_TEMPLATE, honesty.CODE_READS_PAIR, cards_dir)
    check_corrections(ls, spec.pushed_roles)
    halves: dict[str, PlannedCheckpoint] = {}
    for role in spec.pushed_roles:
        src = ls.existing(spec.checkpoints[role], f"checkpoints.{role}", "dir")
        halves[role] = plan_half(src, role, f"checkpoints.{role}", ls.path)
        _check_half(ev, eval_path, halves[role], role)
    if len(halves) == 2:
        honesty.check_pair_metas(
            halves["av"].meta, halves["ar"].meta, halves["av"].meta_file, halves["ar"].meta_file
        )
    for half in halves.values():
        honesty.check_meta_against_eval(half.meta, ev["nla"], half.meta_file, eval_path)
    if "ar" in halves:
        honesty.check_yardstick(
            {"the pair": halves["ar"].meta},
            {"the pair": cited.report.figures.fixed_ar is not None},
            eval_path,
            spec.card.co_trained_ar,
        )
    train = _train_eval(ls, halves, ev)
    if "av" in halves:
        av = halves["av"]
        scale = honesty.injection_scale(av.meta, av.meta_file, av.source, ls.base_model)
    else:  # an AR alone: the eval's AV scale against the base, for the card (the AV's release refuses OOD)
        ar = halves["ar"]
        scale = honesty.measure_scale(
            ev["nla"]["injection"].get("scale"),
            ls.base_model or ar.meta.base_model,
            eval_path,
            layer=ar.meta.layer,
        )
    training = training_data(ls)
    first = next(iter(halves.values()))
    base_id = card_base_model(ls, first.meta)
    legal = plan_legal(ls, first.meta, base_id, first.source)
    exports = _exports(ls, halves, stack)
    names = names_for(ls, base_id, [h.meta.base_model for h in halves.values()])
    scale = names.public_tree(scale)
    results = cards.pair_eval_results(cited.report, spec.eval_dataset or "hubkit-eval-table")
    targets = []
    for role, half in halves.items():
        target = RepoTarget(role, spec.repos[role], "model", role, spec.tag, spec.private)
        dest = out / target.folder
        reason = spec.retraction(role)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(eval_path, dest / constants.EVAL_FILE)  # before write_half rewrites its local paths
        shipped, export = exports.get(role, (half, None))
        sources = write_half(shipped, dest, legacy_pt, reason, names)
        write_model_repo(
            ls, dest, target, role=role, meta=half.meta, base_id=base_id, cited=cited, legal=legal, names=names,
            training=training, template=cards.MODEL_TEMPLATE, eval_results=results, tags=spec.card.tags,
            cards_dir=cards_dir,
            title=f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} for {base_id} (layer {half.meta.layer})",
            sources=sources | shipped.copied_sources(),
            provenance={
                "export": export,
                "skipped": half.skipped,
                "checkpoint": {"path": str(half.source), "eval_recorded": True},
                "train_eval": eval_summary(train.data, train.path) if train else None,
                "injection": scale,
            },
            train_ev=train.report if train else None, scale=scale, retracted=reason,
            files=half.weight_files(), export=export,
        )  # fmt: skip
        targets.append(target)
    return targets


def build_trajectory(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    """Check every evaluated checkpoint, then write them as ``step_*/`` folders of one repo."""
    spec = ls.spec
    assert spec.trajectory is not None
    run = ls.existing(spec.trajectory, "trajectory", "dir")
    cited = honesty.cite_eval(ls, "trajectory")
    ev, eval_path, points = cited.data, cited.path, cited.report.figures.trajectory.checkpoints
    honesty.check_card_figures(
        ev, eval_path, cards.TRAJECTORY_TEMPLATE, honesty.CODE_READS_TRAJECTORY, cards_dir
    )
    names = [p.name for p in points]
    check_corrections(ls, names)
    metas = (constants.META_FILE, constants.AR_META_JSON)
    on_disk = {
        p.name for p in run.iterdir() if not p.name.startswith(".") and any((p / m).exists() for m in metas)
    }
    unevaluated = sorted(on_disk - set(names))
    if unevaluated:
        log.warning(
            "%s: checkpoints without numbers in %s are not published: %s", run, eval_path, unevaluated
        )
    # each checkpoint eval.json lists, planned and checked against the hashes it recorded
    halves: list[tuple[TrajectoryPoint, PlannedCheckpoint]] = []
    role = None
    for p in points:
        src = run / p.name
        if not src.is_dir():
            raise ReleaseError(
                f"{eval_path}: lists checkpoint {p.name!r} but {run} has no folder of that name; "
                "point `trajectory` at the run that was evaluated"
            )
        half = plan_half(src, role, "trajectory", ls.path)
        role = half.meta.role
        label = f"{role.upper()} {p.name}"
        honesty.check_hashes(half.shipped_sources(), getattr(p, role).files, eval_path, src, label)
        honesty.check_meta_against_eval(half.meta, ev["nla"], half.meta_file, eval_path)
        halves.append((p, half))
    assert role is not None
    # the frozen partner the eval paired every checkpoint with must be the same NLA
    fixed = (ev["inputs"].get("checkpoints") or {}).get(f"fixed_{'ar' if role == 'av' else 'av'}")
    if fixed and Path(fixed["path"]).is_dir():
        fixed_meta, fixed_file = NLAMeta.load(fixed["path"]), Path(fixed["path"]) / constants.META_FILE
        for _, half in halves:
            if role == "av":
                honesty.check_pair_metas(half.meta, fixed_meta, half.meta_file, fixed_file)
            else:
                honesty.check_pair_metas(fixed_meta, half.meta, fixed_file, half.meta_file)
    own_ars = {
        p.name: h.source / "ar" for p, h in halves if (h.source / "ar" / constants.META_FILE).is_file()
    }
    honesty.check_yardstick(
        {name: NLAMeta.load(folder) for name, folder in own_ars.items()},
        {p.name: p.fixed_ar is not None for p, _ in halves},
        eval_path,
        spec.card.co_trained_ar,
    )
    scales: dict[str, dict | None] = {}
    if role == "av":
        for _, h in halves:
            scales[h.source.name] = honesty.injection_scale(h.meta, h.meta_file, h.source, ls.base_model)
    last = halves[-1][1]
    base_id = card_base_model(ls, last.meta)
    legal = plan_legal(ls, last.meta, base_id, last.source)
    target = RepoTarget("trajectory", spec.repos["trajectory"], "model", "trajectory", spec.tag, spec.private)
    dest = out / target.folder
    sources: dict[str, dict] = {}
    step_evals = (ev.get("outputs") or {}).get("checkpoints") or {}
    public = names_for(ls, base_id, [h.meta.base_model for _, h in halves])
    scales = public.public_tree(scales)
    for p, half in halves:
        name = p.name
        for rel, rec in write_half(half, dest / name, legacy_pt, spec.retraction(name), public).items():
            sources[f"{name}/{rel}"] = rec
        sources |= half.copied_sources(prefix=f"{name}/")
        if step_evals.get(name):
            honesty.copy_output(
                eval_path, step_evals[name], dest / name / constants.EVAL_FILE, f"eval.json of {name}"
            )
    shutil.copyfile(eval_path, dest / constants.EVAL_FILE)
    sources |= {
        rel: {"from": str(eval_path.parent / rel), **rec} for rel, rec in publish_files(dest, public).items()
    }
    retracted = {c.checkpoint for c in spec.corrections}
    example = next((p.name for p, _ in reversed(halves) if p.name not in retracted), halves[-1][0].name)
    results = cards.trajectory_eval_results(cited.report, spec.eval_dataset or "hubkit-eval-table", retracted)
    write_model_repo(
        ls, dest, target, role=role, meta=last.meta, base_id=base_id, cited=cited, legal=legal, names=public,
        training=training_data(ls), template=cards.TRAJECTORY_TEMPLATE, eval_results=results,
        tags=[*spec.card.tags, "trajectory"], cards_dir=cards_dir,
        title=f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} trajectory for {base_id} "
        f"(layer {last.meta.layer})",
        sources=sources,
        provenance={"checkpoints": names, "not_published": unevaluated, "injection": scales},
        subfolder=example, scales=scales, retracted=sorted(retracted),
    )  # fmt: skip
    return [target]


def _table(path: Path, side, info: dict, rel: str, credit) -> dict:
    """What the dataset card says about one table (sidecar blocks with the optional keys filled)."""
    import pyarrow.parquet as pq

    return {
        "path": rel,
        "table": side.table,
        "rows": info["rows"],
        "columns": list(pq.ParquetFile(str(path)).schema_arrow.names),
        "sha256": info["sha256"],
        "extraction": asdict(side.extraction),
        "corpus": {
            **asdict(side.corpus),
            "title": credit.name or side.corpus.name,
            "license": credit.license,
            "url": credit.url,
            "attribution": credit.attribution,
        },
        "split": side.split
        and {"name": side.split.name, "seed": side.split.seed, "fractions": side.split.fractions},
        "labeling": side.labeling and {"cache_hits": 0, **asdict(side.labeling)},
        "git_commit": side.git_commit,
        "hubkit_version": side.hubkit_version,
    }


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
        info, side_file = table_info(path), sidecar_path(path)
        try:
            side = read_sidecar(path)
        except DataError as exc:
            raise HonestyError(f"{path}: the dataset card needs the table's sidecar: {exc}") from exc
        recorded = side.files.get(path.name)
        if recorded is not None and recorded != info["sha256"]:
            raise HonestyError(
                f"{side_file}: records sha256 {recorded[:12]}… for {path.name} but the file has "
                f"{info['sha256'][:12]}…; the sidecar describes another table. Re-run the stage that made it"
            )
        if side.rows != info["rows"]:
            raise HonestyError(
                f"{side_file}: records {side.rows} rows but {path} has {info['rows']}; the card "
                "would state a wrong row count. Re-run the stage that made it"
            )
        rel = f"{DATA_DIR}/{path.name}"
        if rel in sources:
            raise ReleaseError(f"{ls.path}: field `data_files[{i}]`: two tables are named {path.name}")
        (dest / DATA_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        shutil.copyfile(side_file, dest / f"{rel}.json")
        sources[rel] = {"from": str(path), "sha256": info["sha256"], "how": "copy"}
        sources[f"{rel}.json"] = {"from": str(side_file), "sha256": sha256_file(side_file), "how": "copy"}
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
        **common_context(ls),
        "title": spec.card.title or target.repo_id.split("/")[-1],
        "license": spec.license,
        "tables": tables,
        "total_rows": total,
    }
    card = cards.dataset_card(
        context, cards_dir, tags=spec.card.tags, rows=total, license=spec.license,
        language=spec.card.language or None, configs=[{"config_name": "default", "data_files": configs}],
        pretty_name=spec.card.title,
    )  # fmt: skip
    (dest / constants.CARD_FILE).write_text(card)
    record = {
        "sources": sources,
        "tables": [{k: t[k] for k in ("path", "table", "rows", "sha256")} for t in tables],
        "parents": parents(ls, None, None, None),
    }
    write_provenance(dest, ls, target, record, names=names)
    return [target]


def check_replaceable(out: Path) -> None:
    """Refuse to replace `out` unless it is missing, empty, or holds only files hubkit wrote there.

    A bundle records the sha256 of each of its files in its hash file (`constants.CHECKPOINT_HASHES_FILE`, not
    pushed); a file it does not list, or one whose bytes changed since, is the user's and is never
    deleted (the rule `extract` and `build` follow for their tables).
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ReleaseError(f"--out {out}: a file, not a folder; choose another --out folder")
    files = sorted(p for p in out.rglob("*") if not p.is_dir())
    if not files:
        return
    try:
        recorded = read_file_hashes(out)
    except CheckpointError as exc:
        raise ReleaseError(f"--out {out}: {exc}") from exc
    if recorded is None:
        raise ReleaseError(
            f"--out {out}: not a release bundle hubkit built (no {constants.CHECKPOINT_HASHES_FILE} recording its files, "
            f"e.g. {files[0].relative_to(out)}); nothing was replaced: choose an empty or new --out folder"
        )
    for path in files:
        rel = path.relative_to(out).as_posix()
        if rel == constants.CHECKPOINT_HASHES_FILE:
            continue
        want = recorded.get(rel)
        if (
            want is None
            or path.is_symlink()
            or path.stat().st_size != want["size"]
            or sha256_file(path) != want["sha256"]
        ):
            why = "not written by hubkit" if want is None else "changed since hubkit wrote it"
            raise ReleaseError(
                f"--out {out}: {rel} is {why}; nothing was replaced: move it away or choose another --out folder"
            )


def build_bundle(
    spec: LoadedSpec | str | Path,
    out: str | Path,
    cards_dir: str | Path | None = None,
    legacy_pt: bool = False,
) -> Bundle:
    """Check and build the bundle of a release into `out` (replaced whole; written atomically).

    Every honesty check runs before anything is moved into `out`: a refused release leaves `out` as it was,
    and so does an `out` holding a file hubkit did not write there (`check_replaceable`).
    """
    ls = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    out = Path(out)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    cdir = Path(cards_dir) if cards_dir is not None else None
    try:
        if ls.spec.kind == "dataset":
            targets = build_dataset(ls, tmp, cdir)
        elif ls.spec.kind == "trajectory":
            targets = build_trajectory(ls, tmp, cdir, legacy_pt)
        else:
            with contextlib.ExitStack() as stack:  # holds the temporary folder of `format: reference` exports
                targets = build_pair(ls, tmp, cdir, legacy_pt, stack)
        found = find_local_paths(tmp)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ReleaseError(
                f"{found[0]}{more}; a release publishes no path of the machine that built it: remove the value "
                "from that file in the checkpoint, or write a Hub id, a release name or a hash in its place"
            )
        bundle = Bundle(
            root=tmp, name=ls.name, kind=ls.spec.kind, tag=ls.spec.tag, targets=targets, spec_sha256=ls.sha256
        )
        bundle.save()
        write_file_hashes(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.root = out
    log.info("release %s: bundle written to %s (%d repo(s))", ls.name, out, len(targets))
    return bundle
