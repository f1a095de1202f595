"""Base-model families: the licence, legal files, stanza and banner a release inherits from its base.

The table is packaged data (``families.yaml`` beside this module), read once into typed `Family`
entries. A family is matched by the base's Hub repo id, then by its ``config.model_type``, else the
default entry applies. Legal files come from the base's local snapshot folder or from paths the
release spec names (``legal_files``); nothing is downloaded. `plan_legal` runs before anything is
written (a missing required file refuses the release); `copy_legal` puts the files in a repo folder.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from hubkit import models
from hubkit.constants import FAMILIES_SCHEMA
from hubkit.meta import NLAMeta
from hubkit.provenance import sha256_file
from hubkit.release.errors import ReleaseError
from hubkit.release.spec import LoadedSpec
from hubkit.schema import SchemaError, from_dict

log = logging.getLogger(__name__)

FAMILIES_FILE = Path(__file__).resolve().parent / "families.yaml"
LICENSES_SUBDIR = "licenses"  # where `hubkit models prepare` puts a registry model's licence files


@dataclass(frozen=True)
class LegalFile:
    """A file a release ships at the root of each model repo; `accept` lists other names it may have."""

    name: str
    source: str
    accept: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """One base family: how to recognise it and what its derivatives must carry."""

    key: str
    display: str
    license: str | None
    stanza: str
    banner: str | None = None
    name_prefix: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    license_url: str | None = None
    use_policy_url: str | None = None
    repos: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    check_types: tuple[str, ...] = ()
    required: tuple[LegalFile, ...] = ()
    optional: tuple[LegalFile, ...] = ()
    default: bool = False

    def stanza_text(self, license: str) -> str:
        """The licence stanza with this family's links (and the release's licence id) filled in."""
        return self.stanza.format(
            display=self.display,
            license=license,
            license_url=self.license_url,
            use_policy_url=self.use_policy_url,
        ).strip()


def _file_rows(raw: Any) -> Any:
    """YAML's `from` (where a file usually comes from) is the dataclass field `source`."""
    if isinstance(raw, list):
        return [{("source" if k == "from" else k): v for k, v in item.items()} for item in raw]
    return raw


@functools.lru_cache(maxsize=4)
def load_families(path: str | Path = FAMILIES_FILE) -> tuple[Family, ...]:
    """The family table at `path` (the packaged one by default), validated; exactly one default, last."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("schema") != FAMILIES_SCHEMA:
        raise ReleaseError(f"{path}: field `schema` must be {FAMILIES_SCHEMA!r}")
    out: list[Family] = []
    for i, raw in enumerate(data.get("families") or []):
        raw = {k: _file_rows(v) if k in ("required", "optional") else v for k, v in raw.items()}
        raw = {k: v for k, v in raw.items() if v is not None or k == "license"}
        try:
            fam = from_dict(Family, raw, str(path), prefix=f"families[{i}].")
            for pattern in fam.repos:
                re.compile(pattern)
        except (SchemaError, re.error) as exc:
            raise ReleaseError(f"{path}: families[{i}]: {exc}") from exc
        out.append(replace(fam, check_types=tuple(fam.check_types or fam.model_types)))
    keys = [f.key for f in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    defaults = [f.key for f in out if f.default]
    if dupes or len(defaults) != 1 or not out[-1].default:
        raise ReleaseError(
            f"{path}: family keys must be unique (duplicates: {dupes}) and exactly one entry, the last, "
            f"must have `default: true` (found {defaults})"
        )
    return tuple(out)


def match_family(
    repo_id: str | None, model_type: str | None, table: tuple[Family, ...] | None = None
) -> Family:
    """The family of a base: by repo id, then by ``config.model_type``, else the default entry."""
    table = table or load_families()
    for fam in table:
        if repo_id and any(re.search(p, repo_id, re.IGNORECASE) for p in fam.repos):
            return fam
    for fam in table:
        if model_type in fam.model_types:
            return fam
    return table[-1]


def config_model_type(*folders: Path | None) -> str | None:
    """``model_type`` from the first ``config.json`` found in `folders` (a Gemma-4-style text tower too)."""
    for folder in filter(None, folders):
        cfg = Path(folder) / "config.json"
        if cfg.is_file():
            try:
                data = json.loads(cfg.read_text())
            except ValueError:
                continue
            if isinstance(data.get("model_type"), str):
                return data["model_type"]
    return None


def local_snapshot(candidates: list[str | None], repo_id: str | None) -> Path | None:
    """The base model's local folder: the first existing folder among `candidates` (the spec's
    `base_model`, the meta's), a prepared offline registry model, or a Hub cache snapshot of `repo_id`.
    Never downloads."""
    for c in candidates:
        if c and Path(c).expanduser().is_dir():
            return Path(c).expanduser()
    for name in filter(None, [*candidates, repo_id]):
        try:
            spec = models.get_spec(name)
        except Exception:  # not an offline registry model
            continue
        folder = models.prepared_dir(spec.name)
        if folder.is_dir():
            return folder
    if repo_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(repo_id, "config.json")
        except Exception:  # not a valid repo id, or no cache
            hit = None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _find(folder: Path | None, legal: LegalFile) -> Path | None:
    subs = (folder, folder / LICENSES_SUBDIR) if folder else ()
    candidates = (sub / name for sub in subs for name in (legal.name, *legal.accept))
    return next((p for p in candidates if p.is_file()), None)


def legal_files(
    family: Family,
    snapshot: Path | None,
    named: dict[str, Path],
    spec_path: str | Path,
) -> dict[str, Path]:
    """``{name in the repo: source file}``: each required file (refused when absent), each optional
    file found, and every file the spec names. Spec paths win over the snapshot's."""
    out: dict[str, Path] = {}
    for legal in (*family.required, *family.optional):
        src = named.get(legal.name) or _find(snapshot, legal)
        if src is not None:
            out[legal.name] = src
        elif legal in family.required:
            where = (
                f"the base model folder {snapshot}" if snapshot else "no local base model folder was found"
            )
            raise ReleaseError(
                f"{spec_path}: a {family.display} derivative must ship `{legal.name}`, not found ({where}); "
                f"it usually comes from {legal.source}. Name it in the spec as `legal_files: "
                f"{{{legal.name}: path/to/file}}`"
            )
    return dict(sorted((out | named).items()))


def release_license(family: Family, spec_license: str | None, spec_path: str | Path, base_id: str) -> str:
    """The licence id for the card header: the family's, which the spec may repeat but not contradict."""
    if family.license is None:
        if not spec_license:
            raise ReleaseError(
                f"{spec_path}: field `license` is needed: the base {base_id!r} is of no known family, so "
                "its licence cannot be inferred; set the Hub licence id this release is under"
            )
        return spec_license
    if spec_license and spec_license != family.license:
        raise ReleaseError(
            f"{spec_path}: field `license` is {spec_license!r} but the base {base_id!r} is {family.display}, "
            f"whose derivatives are under {family.license_name or family.license!r}; set `license: "
            f"{family.license}` or remove the field"
        )
    return family.license


@dataclass
class LegalPlan:
    """What a release inherits from its base: family, licence id, files to ship."""

    family: Family
    license: str
    files: dict[str, Path] = field(default_factory=dict)

    def context(self) -> dict:
        """The card's `legal` section."""
        shown = ("display", "banner", "name_prefix", "license_url", "use_policy_url")
        return {
            **self.record(),
            **{name: getattr(self.family, name) for name in shown},
            "stanza": self.family.stanza_text(self.license),
        }

    def check_card(self, card: str, template: str) -> None:
        """A card must print the family's banner (the Llama licences ask for it to be displayed)."""
        if self.family.banner and self.family.banner not in card:
            raise ReleaseError(
                f"card template {template} does not print {self.family.banner!r}, which the {self.family.display} "
                "licence asks every derivative to display; add `{{ legal.banner }}` to the template"
            )

    def record(self) -> dict:
        """What provenance.json records of the licence."""
        return {"family": self.family.key, "license": self.license, "files": sorted(self.files)}

    def card_header(self) -> dict:
        """``license`` (and ``license_name``/``license_link`` for an ``other`` licence) for ModelCardData."""
        out = {"license": self.license}
        if self.family.license == "other":
            out.update(license_name=self.family.license_name, license_link=self.family.license_link)
        return out


def plan_legal(ls: LoadedSpec, meta: NLAMeta, base_id: str, checkpoint: Path) -> LegalPlan:
    """Match the base family, settle the licence id and find every legal file (refused when missing)."""
    spec = ls.spec
    snapshot = local_snapshot([ls.base_model, meta.base_model], base_id)
    model_type = config_model_type(checkpoint, snapshot)
    family = match_family(base_id, model_type)
    if model_type and family.check_types and model_type not in family.check_types:
        raise ReleaseError(  # a base named as one family whose weights are of another architecture
            f"{ls.path}: the card names base {base_id!r} ({family.display}) but the weights' config.json "
            f"says model_type {model_type!r}, not one of {list(family.check_types)}; set `card.base_model` "
            "to the model these checkpoints were trained from"
        )
    license = release_license(family, spec.license, ls.path, base_id)
    named = {name: ls.existing(p, f"legal_files.{name}", "file") for name, p in spec.legal_files.items()}
    files = legal_files(family, snapshot, named, ls.path)
    if family.name_prefix:
        for role in spec.pushed_roles:
            repo_name = spec.repos[role].split("/")[-1]
            if not repo_name.lower().startswith(family.name_prefix.lower().replace(" ", "-")):
                log.warning(
                    "%s: repo %s: the %s licence asks that a model built from it has %r at the beginning "
                    "of its name",
                    ls.path,
                    spec.repos[role],
                    family.display,
                    family.name_prefix,
                )
    return LegalPlan(family, license, files)


def copy_legal(plan: LegalPlan, dest: Path) -> dict[str, dict]:
    """Copy the legal files to the root of `dest`; ``{name: {from, sha256, how}}`` for provenance."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, src in plan.files.items():
        shutil.copyfile(src, dest / name)
        out[name] = {
            "from": str(src),
            "sha256": sha256_file(src),
            "how": f"legal file ({plan.family.display})",
        }
    return out
