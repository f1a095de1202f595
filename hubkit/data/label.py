"""Stage 2: explain what in each text prefix drives the model's next-token prediction (labeler + auditor).

For every row of a split table, a labeler writes 2-3 short features of the prefix that drive the next
token, the last about the final token; an auditor then checks the draft against the text and returns
a corrected one. Both answer inside ``<explanation></explanation>``. The labeled table is the input
table plus `hubkit.data.tables.LABEL_COLUMNS`:

- ``explanation``: the normalised text *without* tags (what an AV's output is after parsing, and the
  AR's input); `wrap` gives the AV SFT target ``<explanation>…</explanation>``;
- ``label_status``: ``ok`` (audited), ``unaudited`` (the auditor's answer had no explanation; the
  draft is kept), ``failed`` (no usable draft; ``explanation`` is empty and stage 3 drops the row);
- ``labeler``, ``auditor``, ``prompt_sha256``, ``labeled_at`` (ISO time the label was made).

A `DirectLabeler` (``context:<n>``) writes the explanation itself: ``auditor`` is ``none``,
``prompt_sha256`` hashes its rule, nothing is cached (it costs less than a lookup). Other labels are
cached in SQLite by `cache_key` across runs, failed ones excepted (a later run tries them again).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hubkit import constants as C
from hubkit import processes
from hubkit.cache import cache_dir
from hubkit.data import chunks
from hubkit.data.labelers import DirectLabeler, Labeler, LabelerError, Messages
from hubkit.data.sidecar import LabelInfo, now_iso, write_sidecar
from hubkit.data.tables import LABEL_COLUMNS, LABEL_SCHEMA, PREFIX, TOKEN, open_table
from hubkit.errors import DataError
from hubkit.provenance import sha256_file
from hubkit.verbalizer import parse_explanation

log = logging.getLogger(__name__)

LABELER_PROMPT = """Below is the start of a text, cut right after one token. A language model has read it and is about \
to predict the next token.

<text>{prefix}</text>

The final token is: "{token}"

Name the 2-3 features of this text that most drive the model's prediction of the next token. Write one short \
line per feature, the broadest first; the last line must be about the final token itself (what it is and \
what it makes likely next). Answer with only those lines inside <explanation></explanation> tags."""

AUDITOR_PROMPT = """You are checking an explanation of what drives a language model's next-token prediction.

<text>{prefix}</text>

The final token is: "{token}"

Draft explanation:
<draft>{draft}</draft>

Check every line of the draft against the text. Correct anything wrong, vague or not supported by the text, \
and keep 2-3 lines, one feature per line, the last about the final token. Answer with only the corrected \
lines inside <explanation></explanation> tags."""

PROMPT_SHA256 = hashlib.sha256((LABELER_PROMPT + "\0" + AUDITOR_PROMPT).encode()).hexdigest()

STATUS_OK, STATUS_UNAUDITED, STATUS_FAILED = "ok", "unaudited", "failed"
NO_AUDITOR = "none"  # the `auditor` of rows a DirectLabeler wrote
LABEL_CACHE_FILE = "labels.sqlite"

_TAG = re.compile(r"</?\s*(explanation|draft|text)\s*>", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|\(\d+\))\s*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\ufffd]")  # control characters and decode errors, not newline


def labeler_messages(prefix: str, token: str) -> Messages:
    return [{"role": "user", "content": LABELER_PROMPT.format(prefix=prefix, token=token)}]


def auditor_messages(prefix: str, token: str, draft: str) -> Messages:
    return [{"role": "user", "content": AUDITOR_PROMPT.format(prefix=prefix, token=token, draft=draft)}]


def normalise(text: str) -> str:
    """One feature per line: stray tags, list markers, control characters, blank lines and extra spaces removed."""
    cleaned = _CONTROL.sub(" ", _TAG.sub(" ", text)).splitlines()
    lines = (" ".join(_BULLET.sub("", line).split()) for line in cleaned)
    return "\n".join(line for line in lines if line)


def parse_label(raw: str) -> str:
    """The normalised explanation inside the tags of a reply, or ``""`` when there is none.

    A reply cut off before the closing tag counts (the text so far); a reply without an opening tag
    does not, since it is usually chatter around the answer.
    """
    text, status = parse_explanation(raw, C.EXPLANATION_OPEN, C.EXPLANATION_CLOSE)
    return normalise(text) if status in ("ok", "unclosed") else ""


def wrap(explanation: str) -> str:
    """The AV SFT target for a normalised explanation: ``<explanation>…</explanation>``."""
    return f"{C.EXPLANATION_OPEN}{explanation}{C.EXPLANATION_CLOSE}"


@dataclass(frozen=True)
class Label:
    explanation: str
    status: str
    labeler: str
    auditor: str
    prompt_sha256: str
    labeled_at: str


def cache_key(labeler: str, auditor: str, prefix: str, token: str) -> str:
    parts = (PROMPT_SHA256, labeler, auditor, prefix, token)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class LabelCache:
    """Labels by `cache_key`, in one SQLite file (safe to kill at any moment; shared between runs)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            deadline = time.monotonic() + 60
            while not self._set_up(deadline):
                time.sleep(0.05)
        except sqlite3.DatabaseError as exc:  # not a database, a damaged one, or another program's
            raise DataError(
                f"--cache {self.path}: not a label cache hubkit can read ({exc}); move it away (labels are asked "
                "again) or pass --no-cache"
            ) from exc

    def _set_up(self, deadline: float) -> bool:
        """Make the table (WAL journal); False when another process is setting the same new file up: the two
        turning it to WAL together refuse one at once ("database is locked") instead of waiting."""
        try:
            with self._db:
                self._db.execute("PRAGMA journal_mode=WAL")
                columns = ", ".join(f"{f.name} TEXT NOT NULL" for f in fields(Label))
                self._db.execute(f"CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, {columns})")
                self._db.execute("SELECT key FROM labels LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            return False
        return True

    @staticmethod
    def default_path() -> Path:
        return cache_dir() / LABEL_CACHE_FILE

    def get_many(self, keys: Sequence[str]) -> dict[str, Label]:
        found: dict[str, Label] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                query = f"SELECT * FROM labels WHERE key IN ({','.join('?' * len(part))})"
                rows = self._db.execute(query, part).fetchall()
                found.update({r[0]: Label(*r[1:]) for r in rows})
        return found

    def put_many(self, labels: dict[str, Label]) -> None:
        with self._lock, self._db:
            rows = [(k, *astuple(v)) for k, v in labels.items()]  # the table's columns are Label's fields
            self._db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _ask(backend: Labeler, conversations: list[Messages]) -> list[str]:
    replies = backend.chat(conversations)
    if len(replies) != len(conversations):
        raise LabelerError(f"{backend.name}: answered {len(replies)} of {len(conversations)} conversations")
    return replies


def provenance(labeler: Labeler | DirectLabeler, auditor: Labeler | None = None) -> tuple[str, str]:
    """(auditor name, prompt hash) recorded with the labels `labeler` (audited by `auditor`) writes."""
    if isinstance(labeler, DirectLabeler):
        if auditor is not None and auditor is not labeler:
            raise DataError(f"labeler {labeler.name} writes its labels itself and takes no auditor")
        return NO_AUDITOR, labeler.prompt_sha256
    return (auditor or labeler).name, PROMPT_SHA256


def label_rows(
    items: Sequence[tuple[str, str]],
    labeler: Labeler | DirectLabeler,
    auditor: Labeler | None = None,
    cache: LabelCache | None = None,
) -> list[Label]:
    """Labels for (prefix, token) pairs, in order: cached ones reused, the rest labeled then audited
    (a DirectLabeler writes them all itself: ``ok``, or ``failed`` when empty)."""
    if isinstance(labeler, DirectLabeler):
        provenance(labeler, auditor)
        texts = [normalise(labeler.explain(prefix, token)) for prefix, token in items]
        made_by = (labeler.name, NO_AUDITOR, labeler.prompt_sha256, now_iso())
        return [Label(text, STATUS_OK if text else STATUS_FAILED, *made_by) for text in texts]
    auditor = auditor or labeler
    keys = [cache_key(labeler.name, auditor.name, p, t) for p, t in items]
    done = cache.get_many(keys) if cache is not None else {}
    todo = {k: item for k, item in zip(keys, items) if k not in done}
    if todo:
        replies = _ask(labeler, [labeler_messages(*item) for item in todo.values()])
        drafts = {k: parse_label(r) for k, r in zip(todo, replies)}
        audit_keys = [k for k, d in drafts.items() if d]
        audits = (
            _ask(auditor, [auditor_messages(*todo[k], drafts[k]) for k in audit_keys]) if audit_keys else []
        )
        audited = dict(zip(audit_keys, map(parse_label, audits)))
        when, new = now_iso(), {}
        for k, draft in drafts.items():
            status = STATUS_OK if audited.get(k) else STATUS_UNAUDITED if draft else STATUS_FAILED
            text = audited.get(k) or draft
            new[k] = Label(text, status, labeler.name, auditor.name, PROMPT_SHA256, when)
        if cache is not None:
            cache.put_many({k: v for k, v in new.items() if v.status != STATUS_FAILED})
        done.update(new)
    return [done[k] for k in keys]


def label_table(
    source: str | Path,
    out: str | Path,
    labeler: Labeler | DirectLabeler,
    auditor: Labeler | None = None,
    *,
    rows_per_chunk: int = 256,
    cache: LabelCache | None = None,
    overwrite: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the labeled table for `source` (a split or activations table) at `out`, plus its sidecar."""
    if rows_per_chunk < 1:
        raise DataError(f"label: rows_per_chunk must be >= 1, got {rows_per_chunk}")
    source, out = Path(source), Path(out)
    auditor_name, prompt_sha = provenance(labeler, auditor)
    pf, parent = open_table(source, (PREFIX, TOKEN))
    table = pf.read()
    stale = [c for c in LABEL_COLUMNS if c in table.column_names]
    if stale:
        log.info("%s: replacing its existing label columns %s", source, stale)
        table = table.drop_columns(stale)
    if table.num_rows == 0:
        raise DataError(f"{source}: the table has no rows to label")
    for name in (PREFIX, TOKEN):
        column = table.column(name)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            raise DataError(
                f"{source}: column `{name}` is {column.type}, expected text; re-run `hubkit extract`"
            )
        if column.null_count:
            first = column.is_null().to_pylist().index(True)
            raise DataError(
                f"{source}: column `{name}` has {column.null_count} null value(s) (first at row {first}); every "
                "row needs its text: drop those rows or re-run `hubkit extract`"
            )
    parent_sha = sha256_file(source)
    params = {
        "stage": "label",
        "source": parent_sha,
        "labeler": labeler.name,
        "auditor": auditor_name,
        "prompt_sha256": prompt_sha,
        "rows_per_chunk": rows_per_chunk,
    }
    if chunks.prepare_output(out, params, overwrite):
        log.info("%s: already labeled with these settings", out)
        return out
    schema = pa.schema(list(table.schema) + list(LABEL_SCHEMA))

    def make_chunk(i: int) -> pa.Table:
        part = table.slice(i * rows_per_chunk, rows_per_chunk)
        items = list(zip(part.column(PREFIX).to_pylist(), part.column(TOKEN).to_pylist()))
        labels = label_rows(items, labeler, auditor, cache)
        for name in LABEL_COLUMNS:
            attr = "status" if name == "label_status" else name
            values = pa.array([getattr(lb, attr) for lb in labels], pa.string())
            part = part.append_column(LABEL_SCHEMA.field(name), values)
        return part

    n_chunks = math.ceil(table.num_rows / rows_per_chunk)
    chunks.run_chunked(out, params, n_chunks, make_chunk, schema, on_chunk=on_chunk)
    done = pq.read_table(out, columns=["label_status", "labeled_at"])
    counts = Counter(done.column("label_status").to_pylist())
    times = done.column("labeled_at")
    info = LabelInfo(
        labeler=labeler.name,
        auditor=auditor_name,
        prompt_sha256=prompt_sha,
        status_counts=dict(sorted(counts.items())),
        first_labeled_at=pc.min(times).as_py(),
        last_labeled_at=pc.max(times).as_py(),
    )
    sidecar = parent.derive(
        table="labeled",
        rows=done.num_rows,
        columns=schema.names,
        labeling=info,
        explanation_format="plain",
        parents={source.name: parent_sha},
        run_sha256=chunks.params_sha256(params),
    )
    processes.on_main(lambda: write_sidecar(out, sidecar))  # rank 0 writes; every rank returns after
    if failed := counts.get(STATUS_FAILED):
        log.warning(
            "%s: %d of %d rows have no usable label (label_status=failed)", out, failed, done.num_rows
        )
    return out
