"""Reading a corpus into documents with stable ids.

Sources, by what `source` names:

- ``bundled``: the small corpus of natural-language paragraphs shipped in ``hubkit/corpus/``;
- a ``.txt`` file: documents separated by blank lines;
- a ``.jsonl`` / ``.json`` / ``.parquet`` file: one document per row (a text field, optionally an id field);
- a folder written by ``datasets.Dataset.save_to_disk``;
- a folder of the files above (read in name order);
- anything else: a ``datasets`` id, loaded with ``datasets.load_dataset`` (from the local cache when offline).

A document's id is the row's id field when one is named, else a hash of its text (`text_id`), so
sampling and the split do not depend on file or order. Exact duplicate texts are kept once (logged):
the same text in two splits would leak.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hubkit.errors import DataError, first_line
from hubkit.vectors_io import read_jsonl, read_text_file

log = logging.getLogger(__name__)

BUNDLED = "bundled"
BUNDLED_FILE = "bundled.jsonl"
TEXT_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


@dataclass(frozen=True)
class Corpus:
    """Documents in a fixed order, with a name and a sha256 over (doc_id, text) pairs."""

    name: str
    documents: tuple[Document, ...]

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for doc in self.documents:
            digest.update(f"{doc.doc_id}\0{doc.text}\0".encode())
        return digest.hexdigest()

    def head(self, n: int) -> Corpus:
        return Corpus(self.name if n >= len(self) else f"{self.name}[:{n}]", self.documents[:n])


def text_id(text: str) -> str:
    """Stable document id from its text."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def bundled_path() -> Path:
    return Path(str(resources.files("hubkit") / "corpus" / BUNDLED_FILE))


def load_corpus(
    source: str | Path,
    *,
    text_field: str = "text",
    id_field: str | None = None,
    split: str = "train",
    config: str | None = None,
    limit: int | None = None,
) -> Corpus:
    """Documents from `source` (see the module docstring); empty texts are dropped, an empty result is an error."""
    source_s = str(source)
    if source_s == BUNDLED:
        rows, name, id_field = _read_file(bundled_path()), BUNDLED, id_field or "id"
    else:
        path = Path(source_s).expanduser()
        if path.is_file():
            rows, name = _read_file(path), path.name
        elif path.is_dir():
            rows, name = _read_dir(path), path.name
        elif path.exists():
            raise DataError(
                f"{source_s}: not a regular file or folder (a FIFO, socket or device); hubkit reads a corpus from a "
                "file it can read twice: save the stream to a file first"
            )
        elif path.suffix in TEXT_SUFFIXES or source_s.startswith((".", "/", "~")):
            raise DataError(f"{source_s}: no such corpus file or folder")
        else:
            rows, name = _read_datasets(source_s, split, config), source_s
    docs = _documents(rows, text_field, id_field, name)[:limit]
    if not docs:
        raise DataError(
            f"corpus {source_s!r} holds no documents with non-empty `{text_field}`; "
            "point --corpus at text, jsonl, parquet or a datasets id with some text in it"
        )
    return Corpus(name, tuple(docs))


def _documents(
    rows: Iterable[dict[str, Any]], text_field: str, id_field: str | None, where: str
) -> list[Document]:
    docs: list[Document] = []
    seen: dict[str, int] = {}
    dupes = empty = 0
    for n, row in enumerate(rows):
        if text_field not in row:
            raise DataError(
                f"{where}: row {n} has no `{text_field}` field (has {sorted(row)}); "
                "name the text field with --text-field"
            )
        text = row[text_field]
        if not isinstance(text, str):
            raise DataError(
                f"{where}: row {n} field `{text_field}` is {type(text).__name__}, expected a string"
            )
        if not text.strip():
            empty += 1
            continue
        if id_field is not None:
            if row.get(id_field) is None:
                raise DataError(f"{where}: row {n} has no `{id_field}` id field")
            doc_id = str(row[id_field])
            if doc_id in seen:
                raise DataError(
                    f"{where}: document id {doc_id!r} appears twice (rows {seen[doc_id]} and {n}); "
                    "ids must be unique"
                )
        else:
            doc_id = text_id(text)
            if doc_id in seen:
                dupes += 1
                continue
        seen[doc_id] = n
        docs.append(Document(doc_id, text))
    if dupes or empty:
        log.info("%s: dropped %d duplicate and %d empty documents", where, dupes, empty)
    return docs


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".txt":
        paragraphs = [p.strip() for p in read_text_file(path).replace("\r\n", "\n").split("\n\n")]
        return [{"text": p} for p in paragraphs if p]
    if path.suffix == ".jsonl":
        return [row for _, row in read_jsonl(path)]
    if path.suffix == ".json":
        try:
            data = json.loads(read_text_file(path))
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of objects")
        return data
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable parquet file ({first_line(exc)})") from exc
    raise DataError(f"{path}: unknown corpus format {path.suffix!r}; use one of {TEXT_SUFFIXES}")


def _read_dir(path: Path) -> list[dict[str, Any]]:
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            raise DataError(f"{path}: holds splits {list(ds)}; point --corpus at one of its split folders")
        return list(ds)
    files = sorted(p for p in path.iterdir() if p.suffix in TEXT_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{path}: a folder with no {'/'.join(TEXT_SUFFIXES)} files and no saved dataset")
    return [row for f in files for row in _read_file(f)]


def _read_datasets(name: str, split: str, config: str | None) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many kinds; all mean the same thing here
        raise DataError(
            f"cannot load corpus {name!r} (split {split!r}) with datasets: {exc}. Offline, only "
            "datasets already in the local cache load; or pass a local file or folder"
        ) from exc
    return list(ds)
