"""Build a release bundle: one folder per target repo, exactly what will be pushed, plus a manifest.

``hubkit release NAME --out DIR`` writes::

    DIR/release.json            manifest: repos, repo types, folders, tag (not pushed)
    DIR/av/ ...                 one folder per repo: weights or adapter, tokenizer, nla_meta.yaml,
    DIR/ar/ ...                 value_head.safetensors, eval.json, plots/*.png, README.md, provenance.json
    DIR/trajectory/step_*/ ...  (a trajectory: one subfolder per checkpoint)
    DIR/dataset/data/ ...       (a dataset: parquet tables and their sidecars)

The bundle is refused (nothing written) when an honesty check fails. It is deterministic: the same
inputs give the same bytes, so pushing a rebuilt, unchanged release uploads nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubkit import constants as C
from hubkit.meta import NLAMeta, Retraction
from hubkit.provenance import git_state, library_versions, sha256_file, sha256_files
from hubkit.release import cards, honesty
from hubkit.release.errors import HonestyError, ReleaseError
from hubkit.release.spec import LoadedSpec, load_spec

log = logging.getLogger(__name__)

BUNDLE_SCHEMA = "hubkit.bundle/1"
PROVENANCE_SCHEMA = "hubkit.provenance/1"
MANIFEST_FILE = "release.json"
PLOTS_DIR = "plots"
DATA_DIR = "data"
# Files a training run leaves in a checkpoint folder that a release does not publish.
TRAINER_FILES = frozenset(
    {
        "trainer_state.json",
        "trainer_state.safetensors",
        "training_args.bin",
        "optimizer.pt",
        "scheduler.pt",
        "scaler.pt",
        "rng_state.pth",
    }
)
# Files the bundle writes itself (replacing any the checkpoint has).
GENERATED = frozenset({C.CARD_FILE, C.PROVENANCE_FILE, C.EVAL_FILE, C.META_FILE})
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ROLE_LONG = {"av": "activation verbalizer (AV)", "ar": "activation reconstructor (AR)"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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

    def save(self) -> Path:
        data = {k: v for k, v in asdict(self).items() if k != "root"}
        path = self.root / MANIFEST_FILE
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

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


@dataclass
class _Half:
    """A checkpoint folder planned for the bundle: what is copied, converted and checked."""

    role: str
    source: Path
    meta: NLAMeta
    meta_file: Path
    copy: list[str] = field(default_factory=list)
    legacy_head: str | None = None  # a linear_head.pt converted to safetensors
    skipped: list[str] = field(default_factory=list)


# -- planning a checkpoint folder ---------------------------------------------------------------
def plan_half(source: Path, role: str | None, field_name: str, spec_path: Path) -> _Half:
    """Read a checkpoint folder: its meta, and which of its files the bundle copies or converts."""
    meta = NLAMeta.load(source)
    if role is not None and meta.role != role:
        raise ReleaseError(
            f"{spec_path}: field `{field_name}`: {source} is an {meta.role.upper()} checkpoint, not an "
            f"{role.upper()}"
        )
    meta_file = source / C.META_FILE if (source / C.META_FILE).exists() else source / C.AR_META_JSON
    half = _Half(meta.role, source, meta, meta_file)
    for p in sorted(source.rglob("*")):
        rel = p.relative_to(source).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(source).parts):
            continue
        name = p.name
        if name in TRAINER_FILES or (rel in GENERATED and rel != C.META_FILE):
            half.skipped.append(rel)
        elif rel == C.META_FILE:
            continue
        elif name == C.LINEAR_HEAD_PT_FILE:
            if (p.parent / C.VALUE_HEAD_FILE).exists():
                half.skipped.append(rel)  # the safetensors head is the same head; the pickle is not shipped
            else:
                half.legacy_head = rel
        elif name.endswith(PICKLE_SUFFIXES):
            raise ReleaseError(
                f"{p}: a pickle file; hubkit publishes safetensors only (a pickle can run code when loaded). "
                "Convert it to safetensors or move it out of the checkpoint folder"
            )
        else:
            half.copy.append(rel)
    return half


def _shipped_sources(half: _Half) -> dict[str, str]:
    """sha256 of every source file whose content reaches the bundle (copied, converted, or the meta rewritten)."""
    rels = [*half.copy, *([half.legacy_head] if half.legacy_head else [])]
    if half.meta_file.exists():
        rels.append(half.meta_file.relative_to(half.source).as_posix())
    return {rel: sha256_file(half.source / rel) for rel in rels}


def _write_half(half: _Half, dest: Path, legacy_pt: bool, retraction: str | None) -> dict[str, dict]:
    """Copy/convert a planned checkpoint into `dest`; returns ``{bundle path: {from, sha256, how}}``."""
    import torch
    from safetensors.torch import save_file

    from hubkit import heads

    dest.mkdir(parents=True, exist_ok=True)
    sources: dict[str, dict] = {}
    for rel in half.copy:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(half.source / rel, dest / rel)
    meta = half.meta
    if half.legacy_head is not None:
        state, _ = heads.split_head_state(
            heads.read_state(half.source / half.legacy_head), half.source / half.legacy_head
        )
        out = (dest / half.legacy_head).parent / C.VALUE_HEAD_FILE
        save_file({k: v.detach().float().contiguous() for k, v in state.items()}, str(out))
        rel_out = out.relative_to(dest).as_posix()
        sources[rel_out] = {
            "from": str(half.source / half.legacy_head),
            "how": "linear_head.pt read with weights_only=True, written as safetensors",
        }
        assert meta.ar is not None
        meta = meta.with_updates(ar=_replace(meta.ar, head_format="value_head", head_bias="bias" in state))
    if legacy_pt and meta.role == "ar":
        assert meta.ar is not None
        head, _ = heads.load_head(dest, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
        if (
            head.bias is None
        ):  # the legacy format is Linear(d, d, bias=True): a zero bias is the same function
            biased = torch.nn.Linear(meta.d_model, meta.d_model, bias=True)
            with torch.no_grad():
                biased.weight.copy_(head.weight)
                biased.bias.zero_()
            head = biased
        heads.save_legacy_pt(head, dest)
        sources[C.LINEAR_HEAD_PT_FILE] = {
            "from": f"{C.VALUE_HEAD_FILE} (bundle)",
            "how": "legacy linear_head.pt (tensors only) written on request (--legacy-pt)",
        }
    if retraction is not None:
        meta = meta.with_updates(retracted=Retraction(reason=retraction))
    meta.save(dest / C.META_FILE)
    sources[C.META_FILE] = {
        "from": str(half.meta_file),
        "how": f"rewritten in {C.SCHEMA_VERSION}" + (" with the retraction" if retraction else ""),
    }
    return sources


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


# -- eval outputs ---------------------------------------------------------------------------------
def _read_eval(ls: LoadedSpec) -> tuple[dict, Path]:
    from hubkit.errors import DataError
    from hubkit.eval.report import read_eval

    assert ls.spec.eval is not None
    path = ls.existing(ls.spec.eval, "eval")
    path = path / C.EVAL_FILE if path.is_dir() else path
    try:
        return read_eval(path), path
    except DataError as exc:
        raise ReleaseError(f"{ls.path}: field `eval`: {exc}") from exc


def _copy_output(eval_path: Path, record: dict, dest: Path, what: str) -> Path:
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


def _copy_plots(ev: dict, eval_path: Path, dest: Path) -> list[dict]:
    plots = (ev.get("outputs") or {}).get("plots") or {}
    out = []
    for name, rec in sorted(plots.items()):
        target = dest / PLOTS_DIR / Path(rec["path"]).name
        _copy_output(eval_path, rec, target, f"plot {name!r}")
        out.append({"name": name.replace("_", " "), "path": f"{PLOTS_DIR}/{target.name}"})
    return out


# -- provenance -----------------------------------------------------------------------------------
def _table_info(path: Path) -> dict:
    info: dict[str, Any] = {"name": path.name, "path": str(path), "sha256": sha256_file(path), "rows": None}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        info["rows"] = pq.ParquetFile(str(path)).metadata.num_rows
    return info


def _training_data(ls: LoadedSpec) -> list[dict]:
    return [
        _table_info(ls.existing(p, f"training_data[{i}]", "file"))
        for i, p in enumerate(ls.spec.training_data)
    ]


def _eval_summary(ev: dict | None, eval_path: Path | None) -> dict | None:
    if ev is None or eval_path is None:
        return None
    table = ev.get("inputs", {}).get("table", {})
    return {
        "file": C.EVAL_FILE,
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


def _write_provenance(dest: Path, ls: LoadedSpec, target: RepoTarget, extra: dict) -> None:
    files = sha256_files(dest)
    files.pop(C.PROVENANCE_FILE, None)
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
    (dest / C.PROVENANCE_FILE).write_text(
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
    path = Path(folder) / C.PROVENANCE_FILE
    if not path.is_file():
        raise ReleaseError(f"{folder}: no {C.PROVENANCE_FILE}; rebuild the bundle")
    return {rel: rec["sha256"] for rel, rec in json.loads(path.read_text())["files"].items()}


# -- card helpers -----------------------------------------------------------------------------------
def card_base_model(ls: LoadedSpec, meta: NLAMeta) -> str:
    """The Hub id for the card header: `card.base_model`, the registry's id, or the meta's if it is one."""
    if ls.spec.card.base_model:
        return ls.spec.card.base_model
    name = meta.base_model
    try:
        from hubkit import models

        return models.get_spec(name).hf_repo
    except Exception:  # not an offline registry model
        pass
    if _REPO_ID.match(name) and not Path(name).exists():
        return name
    raise ReleaseError(
        f"{ls.path}: field `card.base_model` is needed: the checkpoints record base model {name!r}, which is not a "
        "Hub repo id; set `card.base_model` to the id the card header should name"
    )


def _nla_context(meta: NLAMeta, base_id: str, nla: dict) -> dict:
    """What the card states about the NLA: layer and width from the meta, the rest as eval.json measured it."""
    return {
        "base_model": base_id,
        "layer": meta.layer,
        "d_model": meta.d_model,
        "injection_scheme": nla["injection"]["scheme"],
        "injection_scale": nla["injection"].get("scale"),
        "ar_num_layers": nla.get("ar_num_layers"),
        "adapter": meta.adapter.kind,
    }


def partner_revision(spec) -> str | None:
    """The revision of the other half: this release's tag for a pair, else `partner_revision` (main when unset)."""
    return spec.tag if spec.kind == "pair" else spec.partner_revision


def _load_code(spec, role: str, subfolder: str | None = None) -> str:
    """The one-line ``from_pretrained`` arguments for the card's three-line snippet."""
    repos, tag = spec.repos, spec.tag
    other = "ar" if role == "av" else "av"
    mine = repos["trajectory"] if spec.kind == "trajectory" else repos[role]
    if other not in repos:
        return (
            f'{role}="{mine}", {other}="<the {other.upper()} trained with it>", {role}_revision="{tag}"'
            + (f', {role}_subfolder="{subfolder}"' if subfolder else "")
        )
    args = {role: mine, other: repos[other]}
    other_rev = partner_revision(spec)
    parts = [f'av="{args["av"]}"', f'ar="{args["ar"]}"']
    if other_rev != tag:
        parts.append(f'{role}_revision="{tag}"')
        if other_rev:
            parts.append(f'{other}_revision="{other_rev}"')
    else:
        parts.append(f'revision="{tag}"')
    if subfolder:
        parts.append(f'{role}_subfolder="{subfolder}"')
    return ", ".join(parts)


def _other(spec, role: str) -> dict | None:
    other = "ar" if role == "av" else "av"
    if other not in spec.repos:
        return None
    return {
        "role": other,
        "role_long": ROLE_LONG[other],
        "repo_id": spec.repos[other],
        "url": cards.repo_url(spec.repos[other]),
    }


def _text(ls: LoadedSpec) -> dict:
    c = ls.spec.card
    return {
        "intended_use": c.intended_use.strip(),
        "limitations": c.limitations.strip(),
        "out_of_scope": (c.out_of_scope or "").strip() or None,
        "citation": c.citation,
    }


def _common_context(ls: LoadedSpec, git: dict) -> dict:
    return {
        "text": _text(ls),
        "license": ls.spec.license,
        "datasets": ls.spec.datasets,
        "tag": ls.spec.tag,
        "hub_url": cards.HUB_URL,
        "provenance": {"git_commit": git.get("commit"), "git_dirty": git.get("dirty")},
    }


def _parents(ls: LoadedSpec, base_id: str | None, meta: NLAMeta | None, role: str | None) -> list[dict]:
    out = []
    if base_id is not None:
        out.append(
            {"repo": base_id, "revision": meta.base_revision if meta else None, "relation": "base_model"}
        )
    if role in ("av", "ar"):
        other = "ar" if role == "av" else "av"
        if other in ls.spec.repos:
            rev = partner_revision(ls.spec)
            out.append({"repo": ls.spec.repos[other], "revision": rev, "relation": f"pair ({other})"})
    out += [asdict(p) for p in ls.spec.parents]
    return out


# -- builders -------------------------------------------------------------------------------------
def _retraction(ls: LoadedSpec, name: str) -> str | None:
    c = ls.spec.correction_for(name)
    return c.reason if c else None


def _check_corrections(ls: LoadedSpec, names: list[str]) -> None:
    for i, c in enumerate(ls.spec.corrections):
        if c.checkpoint not in names:
            raise ReleaseError(
                f"{ls.path}: field `corrections[{i}].checkpoint` {c.checkpoint!r} is not a checkpoint "
                f"of this release; choose one of {names}"
            )


def _build_halves(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    spec = ls.spec
    ev, eval_path = _read_eval(ls)
    if ev.get("kind") != "pair":
        raise ReleaseError(
            f"{ls.path}: field `eval`: {eval_path} is a {ev.get('kind')!r} eval; an `{spec.kind}` "
            "release cites a pair eval (`hubkit eval --av … --ar …`)"
        )
    honesty.check_required(ev, honesty.REQUIRED_PAIR, eval_path)
    _check_corrections(ls, spec.pushed_roles)
    halves = {}
    for role in spec.pushed_roles:
        src = ls.existing(spec.checkpoints[role], f"checkpoints.{role}", "dir")
        half = plan_half(src, role, f"checkpoints.{role}", ls.path)
        recorded = (ev["inputs"].get("checkpoints") or {}).get(role, {}).get("files", {})
        honesty.check_hashes(_shipped_sources(half), recorded, eval_path, src, role.upper())
        halves[role] = half
    if len(halves) == 2:
        honesty.check_pair_metas(
            halves["av"].meta, halves["ar"].meta, halves["av"].meta_file, halves["ar"].meta_file
        )
    for half in halves.values():
        honesty.check_meta_against_eval(half.meta, ev["nla"], half.meta_file, eval_path)
    if "av" in halves:
        scale = honesty.injection_scale(
            halves["av"].meta, halves["av"].meta_file, halves["av"].source, spec.base_model
        )
    else:  # an AR alone: the eval's AV scale against the base, for the card (the AV's release refuses OOD)
        ar = halves["ar"]
        scale = honesty.measure_scale(
            ev["nla"]["injection"].get("scale"), spec.base_model or ar.meta.base_model, eval_path
        )
    git = git_state()
    targets = []
    training = _training_data(ls)
    for role, half in halves.items():
        target = RepoTarget(role, spec.repos[role], "model", role, spec.tag, spec.private)
        dest = out / target.folder
        retraction = _retraction(ls, role)
        sources = _write_half(half, dest, legacy_pt, retraction)
        shutil.copyfile(eval_path, dest / C.EVAL_FILE)
        plots = _copy_plots(ev, eval_path, dest)
        base_id = card_base_model(ls, half.meta)
        weight_files = [
            {"path": rel, "sha256": sha}
            for rel, sha in sorted(_shipped_sources(half).items())
            if rel != half.meta_file.relative_to(half.source).as_posix()
        ]
        context = {
            **_common_context(ls, git),
            "title": spec.card.title
            or f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} for {base_id} (layer {half.meta.layer})",
            "summary": spec.card.summary,
            "role": role,
            "role_long": ROLE_LONG[role],
            "repo_id": target.repo_id,
            "other": _other(spec, role),
            "nla": _nla_context(half.meta, base_id, ev["nla"]),
            "scale": scale,
            "load_args": _load_code(spec, role),
            "ev": ev,
            "plots": plots,
            "retracted": retraction,
            "corrections": [asdict(c) for c in spec.corrections],
            "files": weight_files,
            "training_data": training,
        }
        card = cards.model_card(
            context,
            template=cards.MODEL_TEMPLATE,
            license=spec.license,
            base_model=base_id,
            eval_results=cards.pair_eval_results(ev, spec.eval_dataset or "hubkit-eval-table"),
            model_name=target.repo_id,
            datasets=spec.datasets,
            tags=spec.card.tags,
            language=spec.card.language,
            cards_dir=cards_dir,
        )
        (dest / C.CARD_FILE).write_text(card)
        _write_provenance(
            dest,
            ls,
            target,
            {
                "sources": sources
                | {
                    rel: {"from": str(half.source / rel), "sha256": sha, "how": "copy"}
                    for rel, sha in _shipped_sources(half).items()
                    if rel in half.copy
                },
                "skipped": half.skipped,
                "checkpoint": {"path": str(half.source), "eval_recorded": True},
                "eval": _eval_summary(ev, eval_path),
                "training_data": training,
                "injection": scale,
                "parents": _parents(ls, base_id, half.meta, role),
                "corrections": [asdict(c) for c in spec.corrections],
            },
        )
        targets.append(target)
    return targets


def _build_trajectory(ls: LoadedSpec, out: Path, cards_dir: Path | None, legacy_pt: bool) -> list[RepoTarget]:
    spec = ls.spec
    assert spec.trajectory is not None
    run = ls.existing(spec.trajectory, "trajectory", "dir")
    ev, eval_path = _read_eval(ls)
    if ev.get("kind") != "trajectory":
        raise ReleaseError(
            f"{ls.path}: field `eval`: {eval_path} is a {ev.get('kind')!r} eval; a trajectory release "
            "cites a trajectory eval (`hubkit eval --trajectory RUN`)"
        )
    honesty.check_required(ev, honesty.REQUIRED_TRAJECTORY, eval_path)
    points = ev["figures"]["trajectory"]["checkpoints"]
    names = [p["name"] for p in points]
    _check_corrections(ls, names)
    on_disk = sorted(
        p.name
        for p in run.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / C.META_FILE).exists() or (p / C.AR_META_JSON).exists())
    )
    unevaluated = sorted(set(on_disk) - set(names))
    if unevaluated:
        log.warning(
            "%s: checkpoints without numbers in %s are not published: %s", run, eval_path, unevaluated
        )
    halves: list[tuple[dict, _Half]] = []
    role = None
    for p in points:
        src = run / p["name"]
        if not src.is_dir():
            raise ReleaseError(
                f"{eval_path}: lists checkpoint {p['name']!r} but {run} has no folder of that name; "
                "point `trajectory` at the run that was evaluated"
            )
        half = plan_half(src, role, "trajectory", ls.path)
        role = role or half.meta.role
        honesty.check_hashes(
            _shipped_sources(half),
            (p.get(half.meta.role) or {}).get("files", {}),
            eval_path,
            src,
            f"{half.meta.role.upper()} {p['name']}",
        )
        honesty.check_meta_against_eval(half.meta, ev["nla"], half.meta_file, eval_path)
        halves.append((p, half))
    assert role is not None
    other_role = "ar" if role == "av" else "av"
    fixed = (ev["inputs"].get("checkpoints") or {}).get(f"fixed_{other_role}")
    if fixed and Path(fixed["path"]).is_dir():
        fixed_meta = NLAMeta.load(fixed["path"])
        fixed_file = Path(fixed["path"]) / C.META_FILE
        for _, half in halves:
            pair = (half.meta, fixed_meta) if role == "av" else (fixed_meta, half.meta)
            files = (half.meta_file, fixed_file) if role == "av" else (fixed_file, half.meta_file)
            honesty.check_pair_metas(*pair, *files)
    scales = (
        {
            h.source.name: honesty.injection_scale(h.meta, h.meta_file, h.source, spec.base_model)
            for _, h in halves
        }
        if role == "av"
        else {}
    )
    target = RepoTarget("trajectory", spec.repos["trajectory"], "model", "trajectory", spec.tag, spec.private)
    dest = out / target.folder
    sources: dict[str, dict] = {}
    step_evals = (ev.get("outputs") or {}).get("checkpoints") or {}
    for p, half in halves:
        name = p["name"]
        for rel, rec in _write_half(half, dest / name, legacy_pt, _retraction(ls, name)).items():
            sources[f"{name}/{rel}"] = rec
        for rel, sha in _shipped_sources(half).items():
            if rel in half.copy:
                sources[f"{name}/{rel}"] = {"from": str(half.source / rel), "sha256": sha, "how": "copy"}
        if name in step_evals and step_evals[name]:
            _copy_output(eval_path, step_evals[name], dest / name / C.EVAL_FILE, f"eval.json of {name}")
    shutil.copyfile(eval_path, dest / C.EVAL_FILE)
    plots = _copy_plots(ev, eval_path, dest)
    last_meta = halves[-1][1].meta
    base_id = card_base_model(ls, last_meta)
    retracted = {c.checkpoint for c in spec.corrections}
    example = next(
        (p["name"] for p, _ in reversed(halves) if p["name"] not in retracted), halves[-1][0]["name"]
    )
    git = git_state()
    training = _training_data(ls)
    context = {
        **_common_context(ls, git),
        "title": spec.card.title
        or f"{target.repo_id.split('/')[-1]}: NLA {role.upper()} trajectory for {base_id} "
        f"(layer {last_meta.layer})",
        "summary": spec.card.summary,
        "role": role,
        "role_long": ROLE_LONG[role],
        "repo_id": target.repo_id,
        "other": _other(spec, role),
        "nla": _nla_context(last_meta, base_id, ev["nla"]),
        "scales": scales,
        "load_args": _load_code(spec, role, subfolder=example),
        "ev": ev,
        "plots": plots,
        "retracted": sorted(retracted),
        "corrections": [asdict(c) for c in spec.corrections],
        "training_data": training,
    }
    card = cards.model_card(
        context,
        template=cards.TRAJECTORY_TEMPLATE,
        license=spec.license,
        base_model=base_id,
        eval_results=cards.trajectory_eval_results(ev, spec.eval_dataset or "hubkit-eval-table", retracted),
        model_name=target.repo_id,
        datasets=spec.datasets,
        tags=[*spec.card.tags, "trajectory"],
        language=spec.card.language,
        cards_dir=cards_dir,
    )
    (dest / C.CARD_FILE).write_text(card)
    _write_provenance(
        dest,
        ls,
        target,
        {
            "sources": sources,
            "checkpoints": [p["name"] for p, _ in halves],
            "not_published": unevaluated,
            "eval": _eval_summary(ev, eval_path),
            "training_data": training,
            "injection": scales,
            "parents": _parents(ls, base_id, last_meta, role),
            "corrections": [asdict(c) for c in spec.corrections],
        },
    )
    return [target]


def _build_dataset(ls: LoadedSpec, out: Path, cards_dir: Path | None) -> list[RepoTarget]:
    from hubkit.data.sidecar import read_sidecar, sidecar_path
    from hubkit.errors import DataError
    from hubkit.schema import to_dict

    spec = ls.spec
    target = RepoTarget("dataset", spec.repos["dataset"], "dataset", "dataset", spec.tag, spec.private)
    dest = out / target.folder
    tables, configs, sources, seen = [], [], {}, set()
    for i, value in enumerate(spec.data_files):
        path = ls.existing(value, f"data_files[{i}]", "file")
        if path.suffix != ".parquet":
            raise ReleaseError(f"{ls.path}: field `data_files[{i}]`: {path} is not a .parquet table")
        try:
            side = read_sidecar(path)
        except DataError as exc:
            raise HonestyError(f"{path}: the dataset card needs the table's sidecar: {exc}") from exc
        info = _table_info(path)
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
        import pyarrow.parquet as pq

        columns = list(pq.ParquetFile(str(path)).schema_arrow.names)
        rel = f"{DATA_DIR}/{path.name}"
        if rel in seen:
            raise ReleaseError(f"{ls.path}: field `data_files[{i}]`: two tables are named {path.name}")
        seen.add(rel)
        (dest / DATA_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        shutil.copyfile(sidecar_path(path), dest / f"{rel}{'.json'}")
        sources[rel] = {"from": str(path), "sha256": info["sha256"], "how": "copy"}
        sources[f"{rel}.json"] = {
            "from": str(sidecar_path(path)),
            "sha256": sha256_file(sidecar_path(path)),
            "how": "copy",
        }
        split = re.sub(r"\W", "_", path.name[: -len(".parquet")])
        configs.append({"split": split, "path": rel})
        sd = to_dict(side)
        tables.append(
            {
                "path": rel,
                "table": side.table,
                "rows": info["rows"],
                "columns": columns,
                "sha256": info["sha256"],
                "extraction": {**{"positions_per_doc": None}, **sd["extraction"]},
                "corpus": {"sha256": None, "n_docs": None, **sd["corpus"]},
                "split": side.split
                and {"name": side.split.name, "seed": side.split.seed, "fractions": side.split.fractions},
                "labeling": side.labeling
                and {
                    "cache_hits": 0,
                    "first_labeled_at": None,
                    "last_labeled_at": None,
                    **asdict(side.labeling),
                },
                "git_commit": side.git_commit,
                "hubkit_version": side.hubkit_version,
            }
        )
    total = sum(t["rows"] for t in tables)
    context = {
        **_common_context(ls, git_state()),
        "title": spec.card.title or target.repo_id.split("/")[-1],
        "summary": spec.card.summary,
        "tables": tables,
        "total_rows": total,
    }
    card = cards.dataset_card(
        context,
        license=spec.license,
        tags=spec.card.tags,
        language=spec.card.language,
        configs=[{"config_name": "default", "data_files": configs}],
        size_category=cards.size_category(total),
        pretty_name=spec.card.title,
        cards_dir=cards_dir,
    )
    (dest / C.CARD_FILE).write_text(card)
    _write_provenance(
        dest,
        ls,
        target,
        {
            "sources": sources,
            "tables": [{k: t[k] for k in ("path", "table", "rows", "sha256")} for t in tables],
            "parents": _parents(ls, None, None, None),
        },
    )
    return [target]


def build_bundle(
    spec: LoadedSpec | str | Path,
    out: str | Path,
    cards_dir: str | Path | None = None,
    legacy_pt: bool = False,
) -> Bundle:
    """Check and build the bundle of a release into `out` (replaced whole; written atomically).

    Every honesty check runs before anything is moved into `out`: a refused release leaves `out` as it was.
    """
    ls = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise ReleaseError(f"{out}: exists and is not a release bundle; choose an empty or new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    cdir = Path(cards_dir) if cards_dir is not None else None
    try:
        if ls.spec.kind in ("av", "ar", "pair"):
            targets = _build_halves(ls, tmp, cdir, legacy_pt)
        elif ls.spec.kind == "trajectory":
            targets = _build_trajectory(ls, tmp, cdir, legacy_pt)
        else:
            targets = _build_dataset(ls, tmp, cdir)
        bundle = Bundle(
            root=tmp, name=ls.name, kind=ls.spec.kind, tag=ls.spec.tag, targets=targets, spec_sha256=ls.sha256
        )
        bundle.save()
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.root = out
    log.info("release %s: bundle written to %s (%d repo(s))", ls.name, out, len(targets))
    return bundle
