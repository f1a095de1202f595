"""The bundle manifest: which bundle folder goes to which repo (``release.json``, not pushed)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from hubkit.constants import BUNDLE_SCHEMA
from hubkit.constants import RELEASE_MANIFEST_FILE as MANIFEST_FILE
from hubkit.release.errors import ReleaseError


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
