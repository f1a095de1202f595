"""`hubkit release init`: a release spec written from what a training run and its eval already know.

From the run folder (``RUN/av|ar|grpo/step_*`` and the recipe copy each stage keeps) and the eval.json:
the checkpoints the eval measured (else each stage's last step), the eval, the training tables, the
base model and layer, the licence of the base's family and the corpora the tables' sidecars name. What
only the author can write (intended use, limitations, citation, a corpus licence no sidecar records)
is written as a marked placeholder, and `load_spec` refuses a spec that still holds one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hubkit import constants
from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.identity import public_base
from hubkit.meta import NLAMeta
from hubkit.release.errors import ReleaseError
from hubkit.release.families import config_model_type, local_snapshot, match_family
from hubkit.release.provenance import KNOWN_CORPORA, corpus_key
from hubkit.release.spec import KINDS, PLACEHOLDER, RELEASES_DIR, placeholder


def _steps(stage: Path) -> list[Path]:
    return sorted(p for p in stage.glob("step_*") if p.is_dir() and (p / constants.META_FILE).is_file())


def _rel(path: str | Path, root: Path) -> str:
    p, root = Path(path).expanduser().resolve(), root.resolve()
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def _eval(path: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    path = path / constants.EVAL_FILE if path.is_dir() else path
    if not path.is_file():
        raise ReleaseError(f"{path}: no such eval.json (--eval)")
    ev = json.loads(path.read_text())
    want = "trajectory" if kind == "trajectory" else "pair"
    if ev.get("kind") != want:
        raise ReleaseError(
            f"{path}: a {ev.get('kind')!r} eval; a `{kind}` release cites a {want} eval (--eval)"
        )
    return path, ev


def _checkpoints(run: Path, ev: dict, kind: str, root: Path) -> dict[str, str]:
    measured = (ev.get("inputs") or {}).get("checkpoints") or {}
    halves = ("av", "ar") if kind == "pair" else (kind,)
    out = {}
    for half in halves:
        if measured.get(half, {}).get("path"):
            out[half] = _rel(measured[half]["path"], root)
            continue
        stages = ("grpo", "av") if half == "av" else ("ar",)
        found = next((s[-1] for st in stages if (s := _steps(run / st))), None)
        if found is None:
            raise ReleaseError(
                f"{run}: no {half.upper()} checkpoint (no {'/'.join(stages)}/step_* with {constants.META_FILE})"
            )
        out[half] = _rel(found, root)
    return out


def _base(recipe: dict, ev: dict, run: Path) -> tuple[str | None, str | None, int | None]:
    """(the base's Hub id, the name the run records, the layer)."""
    base = (ev.get("nla") or {}).get("base_model") or recipe.get("base_model")
    layer = (ev.get("nla") or {}).get("layer", recipe.get("layer"))
    if base is None:
        step = next((s[-1] for st in ("av", "ar", "grpo") if (s := _steps(run / st))), None)
        if step is not None:
            meta = NLAMeta.load(step, check_depth=False)
            base, layer = meta.base_model, meta.layer
    return (public_base(base) if base else None), base, layer


def _tables(recipe: dict, root: Path, kind: str) -> list[str]:
    stages = ("av", "ar", "grpo", "eval") if kind == "dataset" else ("av", "ar")
    out = []
    for stage in stages:
        data = (recipe.get(stage) or {}).get("data") if isinstance(recipe.get(stage), dict) else None
        if data and Path(data).expanduser().exists() and _rel(data, root) not in out:
            out.append(_rel(data, root))
    return out


def _corpora(tables: list[str], root: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for t in tables:
        path = root / t  # `t` may be absolute
        if not sidecar_path(path).is_file():
            continue
        key = corpus_key(read_sidecar(path).corpus.name)
        if key not in KNOWN_CORPORA and key not in out:
            out[key] = {"license": placeholder(f"the licence id of corpus {key!r}"), "url": None}
    return out


def init_spec(
    name: str,
    kind: str,
    run: str | Path,
    eval_path: str | Path | None = None,
    repo: str | None = None,
    releases_dir: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write ``releases/NAME.yaml`` for `kind` from the run folder `run` (and its eval); returns the file."""
    if kind not in KINDS:
        raise ReleaseError(f"--kind {kind!r}: choose one of {list(KINDS)}")
    folder = Path(releases_dir) if releases_dir is not None else Path.cwd() / RELEASES_DIR
    root = folder.resolve().parent if folder.name == RELEASES_DIR else folder.resolve()
    out = folder / f"{name}.yaml"
    if out.exists() and not force:
        raise ReleaseError(f"{out}: exists; edit it, or pass --force to write it again from the run")
    run = Path(run)
    if not run.is_dir():
        raise ReleaseError(f"{run}: no such run folder (--run)")
    found, ev = _eval(Path(eval_path), kind) if eval_path else (None, {})
    recipe: dict[str, Any] = {}  # the recipe copy the first stage kept
    for stage in ("av", "ar", "grpo"):
        copy = run / stage / constants.RECIPE_COPY
        data = yaml.safe_load(copy.read_text()) if copy.is_file() else None
        if isinstance(data, dict):
            recipe = data
            break
    base, local_base, layer = _base(recipe, ev, run)
    tables = _tables(recipe, root, kind)
    spec: dict[str, Any] = {"schema": constants.RELEASE_SPEC_SCHEMA, "kind": kind, "tag": "v0.1"}
    stem = repo or placeholder(f"org/{name}: the Hub repo id")
    halves = ("av", "ar") if kind == "pair" else (kind,)
    spec["repos"] = {h: f"{stem}-{h}" if repo and kind == "pair" else stem for h in halves}
    if kind in ("av", "ar", "pair"):
        spec["checkpoints"] = _checkpoints(run, ev, kind, root)
    if kind == "trajectory":
        stage = run if _steps(run) else next((run / s for s in ("av", "grpo", "ar") if _steps(run / s)), run)
        spec["trajectory"] = _rel(stage, root)
    if kind == "dataset":
        spec["data_files"] = tables or [placeholder("the parquet tables to publish")]
        spec["license"] = placeholder("the Hub licence id of the tables")
    else:
        spec["eval"] = (
            _rel(found, root)
            if found
            else placeholder("the eval.json that measured these checkpoints (`hubkit eval`)")
        )
        # the licence of the base's family (by Hub id, then its config.model_type), as the release finds it
        fam = match_family(base, config_model_type(local_snapshot([local_base], base)))
        spec["license"] = fam.license or placeholder(
            f"the Hub licence id (the base {base or local_base!r} is of no known family)"
        )
        spec["training_data"] = tables
    corpora = _corpora(tables, root)
    if corpora:
        spec["corpora"] = corpora
    what = f"{base or 'the base model'}" + (f" layer {layer}" if layer is not None else "")
    spec["card"] = {
        "title": f"{name}: NLA {kind} for {what}",
        "intended_use": placeholder("what this release is for, and who should use it"),
        "out_of_scope": placeholder("what it must not be used for"),
        "limitations": placeholder("what its numbers do not show; where it reads badly"),
        "citation": placeholder("a BibTeX entry for this release"),
    }
    if kind != "dataset":
        spec["card"]["base_model"] = base or placeholder(
            "the base model's Hub id (the run names a local folder)"
        )
    header = (
        f"# written by `hubkit release init {name} --kind {kind}` from {run}"
        + (f" and {eval_path}" if eval_path else "")
        + f".\n# `hubkit release {name}` refuses this file until every `{PLACEHOLDER} …>>` value is written.\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100))
    return out
