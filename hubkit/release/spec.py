"""Release specs: ``releases/NAME.yaml`` as a typed dataclass, validated field by field.

A spec says *what* to publish (checkpoints, a trajectory run folder or dataset files), *where*
(repo ids and a tag), *which numbers* back it (an eval.json) and the words only its author can write
(intended use, limitations, citation, corrections). Relative paths are relative to the project root:
the folder that holds ``releases/`` (or the spec's own folder when it is not in one).

``releases/example-pair.yaml`` is a complete example.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from hubkit.constants import RELEASE_SPEC_SCHEMA as SPEC_SCHEMA
from hubkit.provenance import sha256_file
from hubkit.release.errors import ReleaseError
from hubkit.schema import SchemaError, from_dict

RELEASES_DIR = "releases"
SPEC_SUFFIXES = (".yaml", ".yml")

Kind = Literal["av", "ar", "pair", "trajectory", "dataset"]
KINDS: tuple[str, ...] = get_args(Kind)
ROLES = ("av", "ar", "trajectory", "dataset")
FORMATS = ("hubkit", "reference")  # how the halves are laid out in their repos

# The licence ids the Hub accepts in a card's `license:` field (its documented list); a release whose
# spec names another id would publish a card the Hub shows as unlicensed.
HUB_LICENCE_IDS = frozenset(
    """
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
    cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
    cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c
    ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openrail++ osl-3.0 postgresql ofl-1.1 ncsa
    unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 llama3
    llama3.1 llama3.2 llama3.3 llama4 gemma unknown other
    """.split()
)


def licence_problem(value: str) -> str | None:
    """Why `value` is not a Hub licence id (with the nearest ids), or None when it is one."""
    if value in HUB_LICENCE_IDS:
        return None
    near = difflib.get_close_matches(value.lower(), sorted(HUB_LICENCE_IDS), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    return (
        f"{value!r} is not a Hub licence id; {hint}use one the Hub lists (apache-2.0, mit, cc-by-4.0, …; "
        "see huggingface.co/docs/hub/repositories-licenses)"
    )


PLACEHOLDER = "<<fill in:"
"""Start of every value `hubkit release init` leaves for the author; `load_spec` refuses any left."""


def placeholder(what: str) -> str:
    return f"{PLACEHOLDER} {what}>>"


def leaves(node: Any, key: str = "", keys: bool = False) -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf of a JSON/YAML structure (``a.b[0]``); with `keys`, each
    string key too (``a.b (the key itself)``)."""
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{key}.{k}" if key else str(k)
            yield from leaves(v, sub, keys)
            if keys and isinstance(k, str):
                yield f"{sub} (the key itself)", k
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, f"{key}[{i}]", keys)
    else:
        yield key or "(top level)", node


def find_placeholders(node: Any) -> list[tuple[str, str]]:
    """``[(dotted field, value)]`` of every string in a spec mapping that is still a placeholder."""
    return [(k, v) for k, v in leaves(node) if isinstance(v, str) and PLACEHOLDER in v]


REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class CardText:
    """What only the author can write; rendered verbatim into the card (Markdown allowed)."""

    intended_use: str
    limitations: str
    citation: str
    title: str | None = None
    summary: str | None = None
    out_of_scope: str | None = None
    base_model: str | None = None  # Hub id for the card header when the metas record a local path
    code_url: str | None = None  # where readers find the training and inference code (default: hubkit's)
    tags: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    # Printed beside the figures when the AR was trained alongside the AV in RL and the eval has no
    # frozen-AR figures: the author's own words that those figures come from an AR trained against the AV.
    co_trained_ar: str | None = None

    def __post_init__(self) -> None:
        for name in ("intended_use", "limitations", "citation"):
            if not getattr(self, name).strip():
                raise ValueError(f"`card.{name}` must not be empty: the card prints it as written")


@dataclass
class CorpusCredit:
    """Attribution of a corpus the tables were drawn from (a sidecar names the corpus, not its licence)."""

    license: str
    url: str | None = None
    name: str | None = None  # display name (default: the corpus name the sidecar records)
    attribution: str | None = None  # free text the corpus's licence asks for

    def __post_init__(self) -> None:
        if not self.license.strip():
            raise ValueError("`corpora.*.license` must not be empty (an SPDX or Hub licence id)")


@dataclass
class Correction:
    """A published checkpoint marked retracted: ``av``/``ar`` for a pair half, or a step folder name."""

    checkpoint: str
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"`corrections` entry for {self.checkpoint!r} needs a non-empty `reason`")


@dataclass
class Parent:
    """A repo this release derives from (base model, the other half, an earlier release), at a revision."""

    repo: str
    revision: str | None = None
    relation: str = "base_model"


@dataclass
class ReleaseSpec:
    """One release: what is published where, which eval backs it, and the author's words."""

    kind: Kind
    tag: str
    repos: dict[str, str]
    card: CardText
    license: str | None = None  # default: the base family's (hubkit/release/families.yaml)
    eval: str | None = None
    train_eval: str | None = None  # eval.json of the same checkpoints on a training-distribution table
    checkpoints: dict[str, str] = field(default_factory=dict)
    trajectory: str | None = None
    data_files: list[str] = field(default_factory=list)
    training_data: list[str] = field(default_factory=list)
    corpora: dict[str, CorpusCredit] = field(default_factory=dict)  # corpus name → licence, URL
    legal_files: dict[str, str] = field(default_factory=dict)  # name in the repo → file (LICENSE, NOTICE…)
    datasets: list[str] = field(default_factory=list)
    eval_dataset: str | None = None
    partner_revision: str | None = None
    base_model: str | None = None
    corrections: list[Correction] = field(default_factory=list)
    parents: list[Parent] = field(default_factory=list)
    private: bool = False
    name: str | None = None
    # "reference": the halves in the reference layout (`hubkit export --format reference`)
    format: str = "hubkit"
    schema: str = SPEC_SCHEMA

    def __post_init__(self) -> None:
        if self.schema != SPEC_SCHEMA:
            raise ValueError(f"`schema` must be {SPEC_SCHEMA!r}, got {self.schema!r}")
        if not _TAG_RE.match(self.tag):
            raise ValueError(f"`tag` {self.tag!r} is not a valid tag name (letters, digits, '.', '_', '-')")
        if self.license is not None and licence_problem(self.license):
            raise ValueError(f"`license` {licence_problem(self.license)}")
        for name in self.legal_files:
            if not name or "/" in name or "\\" in name or name.startswith("."):
                raise ValueError(f"`legal_files.{name}` must be a plain file name such as LICENSE or NOTICE")
        if self.format not in FORMATS:
            raise ValueError(f"`format` must be one of {list(FORMATS)}, got {self.format!r}")
        if self.format != "hubkit" and self.kind not in ("av", "ar", "pair"):
            raise ValueError(
                f"`format: {self.format}` applies to av, ar and pair releases, not `{self.kind}`"
            )
        seen: dict[str, str] = {}
        for role, repo in sorted(self.repos.items()):
            if role not in ROLES:
                raise ValueError(f"`repos.{role}` is not a known role; use {list(ROLES)}")
            if not REPO_RE.match(repo):
                raise ValueError(f"`repos.{role}` {repo!r} is not a repo id like 'org/name'")
            other = seen.setdefault(repo.lower(), role)
            if other != role:
                raise ValueError(
                    f"`repos.{role}` is {repo!r}, the repo `repos.{other}` names too: each half needs its "
                    "own repo (one would overwrite the other on main); name another repo"
                )
        for role in self.checkpoints:
            if role not in ("av", "ar"):
                raise ValueError(
                    f"`checkpoints.{role}` is not a half; use `checkpoints.av` and/or `checkpoints.ar`"
                )
        for i, parent in enumerate(self.parents):
            if not REPO_RE.match(parent.repo):
                raise ValueError(f"`parents[{i}].repo` {parent.repo!r} is not a repo id like 'org/name'")
        for i, ds in enumerate(self.datasets):
            if not REPO_RE.match(ds):
                raise ValueError(f"`datasets[{i}]` {ds!r} is not a Hub dataset id like 'org/name'")
        self._check_kind()

    def _check_kind(self) -> None:
        def need(cond: bool, name: str, why: str) -> None:
            if not cond:
                raise ValueError(f"`{name}` is required for a `{self.kind}` release ({why})")

        def refuse(cond: bool, name: str) -> None:
            if cond:
                raise ValueError(f"`{name}` does not apply to a `{self.kind}` release; remove it")

        if self.kind in ("av", "ar", "pair"):
            halves = ("av", "ar") if self.kind == "pair" else (self.kind,)
            for h in halves:
                need(h in self.checkpoints, f"checkpoints.{h}", "the checkpoint folder to publish")
                need(h in self.repos, f"repos.{h}", "the repo to publish it to")
            extra = sorted(set(self.checkpoints) - set(halves))
            refuse(bool(extra), f"checkpoints.{extra[0]}" if extra else "")
            need(self.eval is not None, "eval", "the eval.json whose numbers the card cites")
            refuse(self.kind == "pair" and self.partner_revision is not None, "partner_revision")
            refuse(self.trajectory is not None, "trajectory")
            refuse(bool(self.data_files), "data_files")
        elif self.kind == "trajectory":
            need(self.trajectory is not None, "trajectory", "the run folder holding step_* checkpoints")
            need("trajectory" in self.repos, "repos.trajectory", "the repo the step_*/ folders go to")
            need(self.eval is not None, "eval", "the trajectory eval.json (`hubkit eval --trajectory`)")
            for name in ("train_eval", "checkpoints", "data_files"):
                refuse(getattr(self, name) not in (None, [], {}), name)
        else:  # dataset
            need(bool(self.data_files), "data_files", "the parquet tables to publish")
            need(self.license is not None, "license", "the Hub licence id of the tables")
            need("dataset" in self.repos, "repos.dataset", "the dataset repo to publish to")
            unused = ("legal_files", "train_eval", "checkpoints", "trajectory", "eval", "partner_revision")
            for name in unused:
                refuse(getattr(self, name) not in (None, [], {}), name)
        roles = {"dataset": {"dataset"}, "trajectory": {"trajectory", "av", "ar"}}
        stray = sorted(set(self.repos) - roles.get(self.kind, {"av", "ar"}))
        refuse(bool(stray), f"repos.{stray[0]}" if stray else "")

    # -- derived --------------------------------------------------------------------------------
    @property
    def pushed_roles(self) -> list[str]:
        """Roles whose repos this release writes to (the other repos are only linked from the card)."""
        if self.kind in ("trajectory", "dataset"):
            return [self.kind]
        return [r for r in ("av", "ar") if r in self.checkpoints]

    def other_revision(self) -> str | None:
        """The revision of the other half: this release's tag for a pair, else `partner_revision` (main when unset)."""
        return self.tag if self.kind == "pair" else self.partner_revision

    def retraction(self, checkpoint: str) -> str | None:
        """The retraction reason the spec gives `checkpoint` (``av``/``ar`` or a step folder), if any."""
        return next((c.reason for c in self.corrections if c.checkpoint == checkpoint), None)


@dataclass
class LoadedSpec:
    """A validated spec with its file, hash and project root (for resolving relative paths)."""

    spec: ReleaseSpec
    path: Path
    root: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    def resolve(self, value: str) -> Path:
        return self.root / Path(value).expanduser()  # an absolute path stays as it is

    @property
    def base_model(self) -> str | None:
        """The spec's `base_model`: a folder relative to the project root when one is there, else as written."""
        value = self.spec.base_model
        if value is None:
            return None
        p = self.resolve(value)
        return str(p) if p.is_dir() else value

    def existing(self, value: str, field_name: str, kind: str = "any") -> Path:
        """The path a spec field names, refused with the field's name when it is not there."""
        p = self.resolve(value)
        ok = p.is_dir() if kind == "dir" else p.is_file() if kind == "file" else p.exists()
        if not ok:
            what = {"dir": "folder", "file": "file"}.get(kind, "path")
            raise ReleaseError(f"{self.path}: field `{field_name}`: no such {what} {p}")
        return p


def find_spec(name: str | Path, releases_dir: str | Path | None = None) -> Path:
    """The spec file for `name`: a path to a YAML file, or ``NAME`` looked up in ``./releases/``."""
    p = Path(name)
    if p.suffix in SPEC_SUFFIXES and p.is_file():
        return p
    folder = Path(releases_dir) if releases_dir is not None else Path.cwd() / RELEASES_DIR
    for suffix in SPEC_SUFFIXES:
        cand = folder / f"{name}{suffix}"
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in folder.glob("*.y*ml")) if folder.is_dir() else []
    raise ReleaseError(
        f"no release spec {name!r}: looked for {folder / (str(name) + '.yaml')}"
        + (f"; specs there: {known}" if known else f" ({folder} has no specs)")
    )


def load_spec(
    name: str | Path, releases_dir: str | Path | None = None, root: str | Path | None = None
) -> LoadedSpec:
    """Find, parse and validate a release spec; errors name the file and the field."""
    path = find_spec(name, releases_dir)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ReleaseError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ReleaseError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    left = find_placeholders(data)
    if left:
        field_name, value = left[0]
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        raise ReleaseError(
            f"{path}: field `{field_name}` is still the placeholder {value!r}{more}; write it before releasing"
        )
    try:
        spec = from_dict(ReleaseSpec, data, str(path))
    except SchemaError as exc:
        raise ReleaseError(str(exc)) from exc
    if root is None:
        parent = path.resolve().parent
        root = parent.parent if parent.name == RELEASES_DIR else parent
    return LoadedSpec(spec=spec, path=path, root=Path(root), sha256=sha256_file(path))
