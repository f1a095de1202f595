"""Where a stage may write: output paths checked before any work, and tables hubkit did not write
never replaced without ``--overwrite``.

A table is hubkit's when its sidecar (schema ``hubkit.dataset/1``) records the file's current sha256,
or, for the moment between writing a table and its sidecar, when the parquet carries hubkit's writer
mark in its schema metadata (`mark`). Anything else at an output path is the user's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pyarrow as pa

from hubkit.data.sidecar import DatasetSidecar, read_sidecar, sidecar_path
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

WRITER_KEY = b"hubkit.writer"
WRITER_VALUE = b"hubkit"
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
LONGEST_SUFFIX = ".json.tmp"  # the longest name hubkit derives from an output's name (its sidecar's temp)


def mark(schema: pa.Schema) -> pa.Schema:
    """`schema` with hubkit's writer mark in its metadata (tables hubkit writes carry it)."""
    return schema.with_metadata({**(schema.metadata or {}), WRITER_KEY: WRITER_VALUE})


def has_mark(path: str | Path) -> bool:
    """Whether the parquet at `path` carries hubkit's writer mark (False for anything unreadable)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(str(path)).metadata or {}
    except Exception:  # not parquet, truncated, unreadable: not a table hubkit finished writing
        return False
    return meta.get(WRITER_KEY) == WRITER_VALUE


def finished_sidecar(path: str | Path) -> DatasetSidecar | None:
    """The hubkit sidecar of the table at `path` when it records the file's current sha256, else None."""
    path = Path(path)
    with contextlib.suppress(DataError, OSError):  # no sidecar, no table, or either unreadable
        recorded = read_sidecar(sidecar_path(path))
        if recorded.legacy is None and recorded.files.get(path.name) == sha256_file(path):
            return recorded
    return None


def written_by_hubkit(path: str | Path) -> bool:
    """Whether the file at `path` is a table hubkit wrote (see the module note)."""
    return finished_sidecar(path) is not None or has_mark(path)


def check_path(path: str | Path, what: str = "--out") -> Path:
    """Refuse an output path that cannot be written: under a system folder, below a file, a name too
    long for the file system, or an existing folder where a file goes (one line each)."""
    path = Path(path)
    absolute = Path(os.path.abspath(path))
    if any(absolute == Path(r) or Path(r) in absolute.parents for r in SYSTEM_ROOTS):
        raise DataError(f"{what} {path}: under a system folder ({absolute.parts[1]}); write somewhere else")
    ancestor = absolute.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{what} {path}: {ancestor} is a file, not a folder; choose another path")
    try:
        limit = int(os.pathconf(ancestor, "PC_NAME_MAX"))
    except (OSError, ValueError):
        limit = 255
    for part in absolute.relative_to(ancestor).parts:
        longest = len(part.encode()) + (len(LONGEST_SUFFIX) if part == absolute.name else 0)
        if longest > limit:
            raise DataError(
                f"{what}: the name {part[:40]!r}… is {len(part.encode())} bytes; this file system allows "
                f"{limit} (hubkit adds up to {len(LONGEST_SUFFIX)} for its sidecar): too long, choose a shorter name"
            )
    try:  # a real probe: permission bits say little to root, and some file systems refuse files anyway
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".hubkit-probe-")
    except OSError as exc:
        raise DataError(f"{what} {path}: {ancestor} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)
    return path


def check_table_output(path: str | Path, overwrite: bool, what: str = "--out") -> Path:
    """An output table path that can be written and, unless `overwrite`, holds nothing hubkit did not
    write; checked before any work so that a refusal leaves everything as it was."""
    path = check_path(path, what)
    if path.is_dir():
        raise DataError(f"{what} {path}: a folder; give the path of a .parquet file")
    if path.exists() and not overwrite and not written_by_hubkit(path):
        raise DataError(
            f"{path}: exists and hubkit did not write it (no sidecar recording it); pass --overwrite to "
            "replace it, or choose another output"
        )
    return path


def make_dir(path: str | Path, what: str = "--out") -> Path:
    """Create an output folder (and parents), with a one-line error when that is impossible."""
    path = check_path(path, what)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} {path}: a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot create the folder ({exc.strerror})") from exc
    return path
