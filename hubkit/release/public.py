"""What a bundle says instead of this machine's paths: the base's Hub id, a path relative to the
project, a checkpoint's repo id, or a file's name beside the sha256 already recorded with it.

`PublicNames` maps the folders a release knows (its base, its checkpoints, its trajectory run) to the
names it publishes them under; `public` applies it to one value and `public_tree` to a JSON/YAML
structure. `publish_files` rewrites the copied files that hold paths (peft's ``adapter_config.json``,
eval.json), and the bundle refuses anything `find_local_paths` finds left: it scans every text file of
a bundle folder (JSON/YAML by key, each safetensors header) for an absolute path rooted in a top-level
folder that exists here (``/root/…``, ``/tmp/…``, ``/home/…``), a ``~/…`` path or a Windows drive path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from hubkit import constants
from hubkit.identity import is_machine_path, public_base
from hubkit.provenance import sha256_file
from hubkit.release.spec import leaves

BASE_KEY = "base_model_name_or_path"  # peft's record of the base, written as the local path it loaded


def _key(value: str | Path) -> str:
    return str(Path(value).expanduser().resolve())


@dataclass
class PublicNames:
    """Local folder → published name, plus the project root paths are made relative to."""

    root: Path
    base_id: str
    known: dict[str, str] = field(default_factory=dict)

    def add(self, folder: str | Path | None, name: str) -> None:
        if folder and (is_machine_path(str(folder)) or Path(folder).exists()):
            self.known[_key(folder)] = name

    def public(self, value: str) -> str:
        """`value` if it is not a local path, else what the bundle calls that path."""
        if not isinstance(value, str) or not value or not is_machine_path(value) or "://" in value:
            return value
        p = Path(value).expanduser()
        if not p.is_absolute():
            return value
        key, root = _key(p), _key(self.root)
        if key in self.known:  # a folder the release names (its base, a checkpoint)
            return self.known[key]
        if Path(key).is_relative_to(root):
            return Path(key).relative_to(root).as_posix()
        for folder, name in self.known.items():
            if key.startswith(folder + "/"):
                return f"{name}/{Path(key).relative_to(folder).as_posix()}"
        return p.name

    def public_tree(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: self.public_tree(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.public_tree(v) for v in node]
        return self.public(node) if isinstance(node, str) else node

    def parent(self, value: str | None) -> str | None:
        """A trainer's parent checkpoint: a known name, else the sha256 of its weights, else its name."""
        if value is None or not is_machine_path(value):
            return value
        known = self.public(value)
        if known != Path(value).name:
            return known
        folder = Path(value).expanduser()
        for weights in (constants.ADAPTER_WEIGHTS_FILE, "model.safetensors", constants.VALUE_HEAD_FILE):
            if (folder / weights).is_file():
                return f"{folder.name} (sha256 of {weights}: {sha256_file(folder / weights)})"
        return folder.name


def public_meta(meta: Any, names: PublicNames) -> Any:
    """`meta` with its base and parent checkpoint named as the release publishes them."""
    base = names.base_id if not meta.base_model or is_machine_path(meta.base_model) else meta.base_model
    return meta.with_updates(
        base_model=base, training=replace(meta.training, parent=names.parent(meta.training.parent))
    )


def names_for(ls: Any, base_id: str, base_paths: list[str | None]) -> PublicNames:
    """The names a release publishes its local folders under."""
    names = PublicNames(ls.root, base_id)
    for path in [*base_paths, ls.base_model]:
        if path and is_machine_path(str(path)):
            names.add(path, public_base(str(path)) or base_id)
    spec = ls.spec
    for role, folder in spec.checkpoints.items():  # the spec requires a repo for each
        names.add(ls.resolve(folder), spec.repos[role])
    if spec.trajectory:
        names.add(ls.resolve(spec.trajectory), spec.repos["trajectory"])
    return names


def dataset_names(ls: Any, sidecars: list[Any]) -> PublicNames:
    """The names a dataset release publishes: each table's base model by its Hub id where one is known."""
    names = PublicNames(ls.root, ls.spec.card.base_model or "")
    for side in sidecars:
        base = side.extraction.base_model
        public = public_base(base) or ls.spec.card.base_model
        if public and is_machine_path(base):
            names.add(base, public)
    return names


def publish_json(path: Path, names: PublicNames) -> dict | None:
    """Rewrite the JSON file at `path` with public names; its provenance record, or None if unchanged."""
    body = json.loads(path.read_text())
    public = names.public_tree(body)
    if public == body:
        return None
    before = sha256_file(path)
    path.write_text(json.dumps(public, indent=2, ensure_ascii=False) + "\n")
    return {
        "sha256_before": before,
        "how": "copied; local paths → Hub ids, repo ids, project-relative paths or file names (hashes unchanged)",
    }


def publish_files(dest: Path, names: PublicNames) -> dict[str, dict]:
    """Rewrite the files under `dest` that record local paths; ``{bundle path: provenance record}``."""
    out: dict[str, dict] = {}
    for path in sorted(dest.rglob(constants.ADAPTER_CONFIG_FILE)):
        cfg = json.loads(path.read_text())
        if isinstance(cfg.get(BASE_KEY), str) and is_machine_path(cfg[BASE_KEY]):
            before = sha256_file(path)
            cfg[BASE_KEY] = names.base_id
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
            out[path.relative_to(dest).as_posix()] = {
                "sha256_before": before,
                "how": f"copied; `{BASE_KEY}` (a local path) → {cfg[BASE_KEY]!r}",
            }
    for path in sorted(dest.rglob(constants.EVAL_FILE)):
        rec = publish_json(path, names)
        if rec is not None:
            out[path.relative_to(dest).as_posix()] = rec
    return out


_CANDIDATE = re.compile(
    r"(?<![\w:/.<>\-])(/[\w.+-]+(?:/[^\s\"'`<>|,;)\]}]*)+|~/[^\s\"'`<>]+|[A-Za-z]:\\[^\s\"'`<>]+)"
)
_SKIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".parquet", ".bin", ".pt", ".gguf", ".model")


def is_local_path(text: str) -> str | None:
    """The first absolute local path in `text`, or None."""
    for m in _CANDIDATE.finditer(text):
        found = m.group(1)  # a `~/` or drive path, or one whose top-level folder exists here
        if not found.startswith("/") or os.path.isdir("/" + found.split("/")[1]):
            return found
    return None


def _scan_file(path: Path) -> Iterator[tuple[str, str]]:
    """``(where, text)`` to scan in one file: keys for JSON/YAML and safetensors metadata, lines otherwise."""
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "np") as f:
                data = f.metadata() or {}
        except Exception:  # not a readable safetensors file: nothing to scan in its header
            return
        yield from ((f"metadata key `{k}`", v) for k, v in leaves(data, keys=True) if isinstance(v, str))
        return
    if path.suffix.lower() in _SKIP_SUFFIXES:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    data = None
    with contextlib.suppress(ValueError, yaml.YAMLError):  # unparsable: scanned line by line
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
    if data is not None:
        yield from ((f"key `{k}`", v) for k, v in leaves(data, keys=True) if isinstance(v, str))
    else:
        yield from ((f"line {i}", line) for i, line in enumerate(text.splitlines(), 1))


def find_local_paths(root: Path) -> list[str]:
    """Every absolute local path in the files under `root` (hidden files included: they are pushed too),
    each as ``FILE: WHERE holds the absolute local path 'PATH'``."""
    return [
        f"{p.relative_to(root).as_posix()}: {where} holds the absolute local path {found!r}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
        for where, text in _scan_file(p)
        if (found := is_local_path(text))
    ]
