"""Absolute paths of this machine in a bundle: found, named by file and key, refused.

A checkpoint or eval written on one machine names that machine's folders (peft's
``base_model_name_or_path``, a trainer's parent checkpoint, an eval's input files). None of them
means anything to the people who download a release, and they say where and as whom it was built, so
`find_local_paths` scans every text file of a bundle folder (and each safetensors header) for a string
that is an absolute path rooted in a top-level folder that exists here (``/root/…``, ``/tmp/…``,
``/home/…``), a home-relative ``~/…`` path, or a Windows drive path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

_CANDIDATE = re.compile(
    r"(?<![\w:/.<>\-])(/[\w.+-]+(?:/[^\s\"'`<>|,;)\]}]*)+|~/[^\s\"'`<>]+|[A-Za-z]:\\[^\s\"'`<>]+)"
)
_SKIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".parquet", ".bin", ".pt", ".gguf", ".model")


@dataclass(frozen=True)
class LocalPath:
    """One absolute local path found: the file (relative to the bundle), where in it, and the path."""

    file: str
    where: str  # a dotted key for JSON/YAML files, else "line N"
    path: str

    def describe(self) -> str:
        return f"{self.file}: {self.where} holds the absolute local path {self.path!r}"


def is_local_path(text: str) -> str | None:
    """The first absolute local path in `text`, or None."""
    for m in _CANDIDATE.finditer(text):
        found = m.group(1)
        if found.startswith("~/") or re.match(r"[A-Za-z]:\\", found):
            return found
        top = found.split("/")[1]
        if top and os.path.isdir("/" + top):
            return found
    return None


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{key}.{k}" if key else str(k))
            if isinstance(k, str):
                yield f"{key}.{k} (the key itself)" if key else f"{k} (the key itself)", k
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key or "(top level)", node


def _structured(path: Path, text: str) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        return None
    return None


def _safetensors_header(path: Path) -> Any:
    try:
        with safe_open(str(path), "np") as f:
            return f.metadata()
    except Exception:  # not a readable safetensors file: nothing to scan in its header
        return None


def scan_file(path: Path, rel: str) -> list[LocalPath]:
    """The absolute local paths in one file (keys for JSON/YAML and safetensors metadata, lines otherwise)."""
    if path.suffix == ".safetensors":
        data = _safetensors_header(path)
        return [
            LocalPath(rel, f"metadata key `{k}`", p) for k, v in _walk(data or {}) if (p := is_local_path(v))
        ]
    if path.suffix.lower() in _SKIP_SUFFIXES:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    data = _structured(path, text)
    if data is not None:
        return [LocalPath(rel, f"key `{k}`", p) for k, v in _walk(data) if (p := is_local_path(v))]
    return [
        LocalPath(rel, f"line {i}", p)
        for i, line in enumerate(text.splitlines(), 1)
        if (p := is_local_path(line))
    ]


def find_local_paths(root: Path) -> list[LocalPath]:
    """Every absolute local path in the files under `root` (hidden files included: they are pushed too)."""
    found: list[LocalPath] = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            found += scan_file(p, p.relative_to(root).as_posix())
    return found
