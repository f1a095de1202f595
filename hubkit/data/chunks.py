"""Chunked, resumable parquet output shared by stage 0 (extract) and stage 2 (label).

Each numbered unit of work (its rows depend only on the input and the run's parameters) is written to
``<parts>/chunk_00012.parquet.tmp``, renamed, then recorded in ``manifest.json`` (replaced atomically).
A run killed at any moment leaves only finished chunks in the manifest; started again with the same
parameters it redoes the rest, and every unit ends up written exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hubkit import processes
from hubkit.constants import CHUNKS_MANIFEST_FILE as MANIFEST_FILE
from hubkit.constants import CHUNKS_SCHEMA as MANIFEST_SCHEMA
from hubkit.data.outputs import check_table_output, finished_sidecar, mark
from hubkit.data.sidecar import sidecar_path
from hubkit.errors import DataError
from hubkit.provenance import sha256_file

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts"  # activations.parquet → activations.parquet.parts/


def chunk_name(index: int) -> str:
    return f"chunk_{index:05d}.parquet"


def parts_dir(out: str | Path) -> Path:
    """The folder holding the chunks of the table that will be written at `out`."""
    out = Path(out)
    return out.with_name(out.name + PARTS_SUFFIX)


def _canonical(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, sort_keys=True, default=str))


def params_sha256(params: dict[str, Any]) -> str:
    """Hash of a run's settings; a finished table records it in its sidecar (`run_sha256`)."""
    return hashlib.sha256(json.dumps(_canonical(params), sort_keys=True).encode()).hexdigest()


def prepare_output(out: str | Path, params: dict[str, Any], overwrite: bool = False) -> bool:
    """Whether the table at `out` is already finished by a run with these `params` (then nothing is to do).

    A table hubkit did not write, or one made with other settings, is refused unless `overwrite` (which
    deletes it and any partial run). Rank 0 decides (and deletes) alone; every rank gets its answer.
    """

    def decide() -> bool:
        path = check_table_output(out, overwrite)
        if overwrite:
            path.unlink(missing_ok=True)
            sidecar_path(path).unlink(missing_ok=True)
            shutil.rmtree(parts_dir(path), ignore_errors=True)
            return False
        if not path.exists():
            return False
        recorded = finished_sidecar(path)
        if recorded is None:  # hubkit's own (writer mark), merged but never given its sidecar
            log.warning("%s: left without its sidecar by an interrupted run; writing it again", path)
            path.unlink()
            sidecar_path(path).unlink(missing_ok=True)
            return False
        if recorded.run_sha256 == params_sha256(params):
            shutil.rmtree(parts_dir(path), ignore_errors=True)
            return True
        raise DataError(
            f"{path}: already exists, made with different settings; choose another output or pass --overwrite"
        )

    return processes.on_main(decide)


@dataclass(frozen=True)
class ChunkRecord:
    rows: int
    sha256: str


class ChunkStore:
    """A folder of numbered parquet chunks plus a manifest of the finished ones; `params` identify the run,
    and resuming with different ones is refused (the chunks written would not fit the rest)."""

    def __init__(self, folder: str | Path, params: dict[str, Any], n_chunks: int) -> None:
        self.folder = Path(folder)
        self.params = _canonical(params)
        self.n_chunks = int(n_chunks)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.folder / MANIFEST_FILE
        self.chunks: dict[int, ChunkRecord] = {}
        if self.manifest_path.exists():
            self._load()
        self._clean()
        self._save()

    def _load(self) -> None:
        try:
            data = json.loads(self.manifest_path.read_text())
        except ValueError as exc:
            raise DataError(
                f"{self.manifest_path}: unreadable manifest ({exc}); delete {self.folder} to start over"
            ) from exc
        if data.get("schema") != MANIFEST_SCHEMA:
            raise DataError(f"{self.manifest_path}: unknown manifest schema {data.get('schema')!r}")
        old = data.get("params", {})
        if old != self.params or data.get("n_chunks") != self.n_chunks:
            changed = sorted(k for k in {*self.params, *old} if self.params.get(k) != old.get(k))
            raise DataError(
                f"{self.folder}: holds a partial run made with different settings (differs in: "
                f"{', '.join(changed) or 'n_chunks'}); resume with the same settings, or delete the folder "
                "(or pass --overwrite) to start over"
            )
        self.chunks = {int(k): ChunkRecord(**v) for k, v in data.get("chunks", {}).items()}

    def _save(self) -> None:
        data = {
            "schema": MANIFEST_SCHEMA,
            "params": self.params,
            "n_chunks": self.n_chunks,
            "chunks": {str(k): asdict(r) for k, r in sorted(self.chunks.items())},
        }
        tmp = self.manifest_path.with_name(self.manifest_path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.manifest_path)

    def _clean(self) -> None:
        """Drop what an interrupted run left: stray temporaries, chunks not in the manifest, vanished chunks."""
        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink()
        for path in self.folder.glob("chunk_*.parquet"):
            index = int(path.stem.split("_")[1])
            if index not in self.chunks:
                log.info("%s: not recorded as finished; it will be redone", path)
                path.unlink()
        lost = [i for i in self.chunks if not (self.folder / chunk_name(i)).is_file()]
        for i in lost:
            log.warning(
                "%s: recorded as finished but missing; it will be redone", self.folder / chunk_name(i)
            )
            del self.chunks[i]

    def pending(self) -> list[int]:
        return [i for i in range(self.n_chunks) if i not in self.chunks]

    def write(self, index: int, table: pa.Table) -> None:
        """Write chunk `index` (tmp, rename, then record it in the manifest)."""
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} outside 0..{self.n_chunks - 1}")
        self.record({index: write_chunk_file(self.folder, index, table)})

    def record(self, finished: dict[int, ChunkRecord]) -> None:
        """Enter chunks already written (by this process or another) in the manifest."""
        self.chunks.update(finished)
        self._save()

    def merge(self, out: str | Path, schema: pa.Schema) -> Path:
        """Stream every chunk, in order, into one parquet file at `out` (tmp then rename)."""
        if self.pending():
            raise DataError(f"{self.folder}: chunks {self.pending()[:5]} are not written yet; cannot merge")
        out = Path(out)
        tmp = out.with_name(out.name + ".tmp")
        with pq.ParquetWriter(tmp, mark(schema)) as writer:
            for i in range(self.n_chunks):
                path = self.folder / chunk_name(i)
                table = pq.read_table(path)
                if not table.schema.equals(schema):
                    raise DataError(f"{path}: schema {table.schema} differs from the run's {schema}")
                if table.num_rows:
                    writer.write_table(table)
        os.replace(tmp, out)
        return out


def write_chunk_file(folder: Path, index: int, table: pa.Table) -> ChunkRecord:
    """Chunk `index` written atomically (tmp, then rename); the manifest is the caller's."""
    path = folder / chunk_name(index)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return ChunkRecord(rows=table.num_rows, sha256=sha256_file(path))


def run_chunked(
    out: str | Path,
    params: dict[str, Any],
    n_chunks: int,
    make_chunk: Callable[[int], pa.Table],
    schema: pa.Schema,
    *,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the table at `out` chunk by chunk (`make_chunk(i)`, depending only on `i` and `params`),
    resuming an interrupted run; `on_chunk(i, rows)` is told after each chunk is safely written.

    Under a launcher each rank computes every `world`-th pending chunk, and rank 0 records them all when
    all are done and merges; one process records each chunk as it finishes.
    """
    out, folder = Path(out), parts_dir(out)
    shared = processes.rank_world()[1] > 1
    store: list[ChunkStore] = []

    def open_store() -> list[int]:
        store.append(ChunkStore(folder, params, n_chunks))
        return store[0].pending()

    todo = processes.on_main(open_store)
    if 0 < len(todo) < n_chunks:
        log.info("%s: resuming, %d of %d chunks already written", folder, n_chunks - len(todo), n_chunks)
    mine: dict[int, ChunkRecord] = {}
    for i in processes.my_share(todo):
        table = make_chunk(i)
        if not table.schema.equals(schema):
            table = table.cast(schema)
        mine[i] = write_chunk_file(folder, i, table)
        if not shared:
            store[0].record({i: mine[i]})
        if on_chunk is not None:
            on_chunk(i, table.num_rows)
    finished = {i: r for share in processes.gather(mine) for i, r in share.items()}

    def merge() -> Path:
        store[0].record(finished)
        path = store[0].merge(out, schema)
        shutil.rmtree(folder, ignore_errors=True)
        return path

    return processes.on_main(merge)
