"""Every card template against complete reports: it renders, and every figure it reads is checked.

The contexts are the ones the real builders pass (captured while building real bundles). For the model
and trajectory cards, every eval.json figure the template reads while rendering is recorded; removing
any one of them from the report must refuse the release (the early figure check or the strict render),
so must setting a printed figure to null, and every figure the early check derives from the template
must really be read.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from pathlib import Path

import pytest

from hubkit.release import cards, honesty
from hubkit.release.bundle import build_bundle
from hubkit.release.errors import ReleaseError
from hubkit.release.figures import template_reads

from .conftest import trajectory_spec, write_spec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CARDS = REPO / "examples" / "cards"


class _Rec(dict):
    """A dict that records every key read through it (and through what it returns)."""

    def __init__(self, data: dict, path: tuple, log: set) -> None:
        super().__init__(data)
        self._path, self._log = path, log

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        self._log.add((*self._path, key))
        return _wrap(value, (*self._path, key), self._log)

    def items(self):  # iterating a mapping (``| dictsort``) reads its contents, not named figures
        return [(k, _wrap(dict.__getitem__(self, k), (*self._path, k), self._log)) for k in self.keys()]


class _RecList(list):
    def __init__(self, data: list, path: tuple, log: set) -> None:
        super().__init__(data)
        self._path, self._log = path, log

    def __iter__(self):
        for i, item in enumerate(list.__iter__(self)):
            self._log.add((*self._path, i))
            yield _wrap(item, (*self._path, i), self._log)

    def __getitem__(self, i):
        self._log.add((*self._path, i))
        return _wrap(list.__getitem__(self, i), (*self._path, i), self._log)


def _wrap(value, path: tuple, log: set):
    if isinstance(value, dict):
        return _Rec(value, path, log)
    if isinstance(value, list):
        return _RecList(value, path, log)
    return value


@pytest.fixture
def contexts(project, monkeypatch) -> dict:
    """``{template: context}`` as the builders pass them, from a pair and a trajectory bundle."""
    seen: dict = {}
    real = cards.render_body

    def capture(template, context, cards_dir=None):
        seen.setdefault(template, copy.deepcopy(context))
        return real(template, context, cards_dir)

    monkeypatch.setattr(cards, "render_body", capture)
    build_bundle(write_spec(project), project["root"] / "out-pair")
    build_bundle(trajectory_spec(project), project["root"] / "out-traj")
    build_bundle(_dataset_spec(project), project["root"] / "out-data")
    monkeypatch.undo()
    return seen


def _dataset_spec(project) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hubkit.data.sidecar import CorpusInfo, DatasetSidecar, ExtractionInfo, write_sidecar

    table = project["root"] / "rl.parquet"
    pq.write_table(pa.table({"doc_id": ["a", "b"], "position": [1, 2]}), str(table))
    side = DatasetSidecar(
        table="rl",
        rows=2,
        extraction=ExtractionInfo(base_model="tiny", layer=1, d_model=32),
        corpus=CorpusInfo(name="bundled", n_docs=2),
    )
    write_sidecar(table, side)
    return write_spec(
        project,
        "data",
        kind="dataset",
        repos={"dataset": "hubkit-org/tiny-nla-data"},
        checkpoints=None,
        eval=None,
        training_data=None,
        data_files=["rl.parquet"],
    )


@contextlib.contextmanager
def _note(path: tuple):
    """Name the removed figure when the refusal does not come."""
    try:
        yield
    except pytest.fail.Exception as exc:
        raise AssertionError(f"the report with {path} removed or null was not refused") from exc


def _null(ev: dict, path: tuple) -> dict | None:
    """A copy of the report with the number or text at `path` set to null (None for other values)."""
    out = copy.deepcopy(ev)
    node = out
    for key in path[:-1]:
        node = node[key]
    if not isinstance(node[path[-1]], (int, float, str)) or isinstance(node[path[-1]], bool):
        return None
    node[path[-1]] = None
    return out


def _delete(ev: dict, path: tuple) -> dict | None:
    out = copy.deepcopy(ev)
    node = out
    for key in path[:-1]:
        node = node[key]
    if not isinstance(node, dict):
        return None  # a list item: removing it changes the list, not a figure
    del node[path[-1]]
    return out


CASES = [
    (cards.MODEL_TEMPLATE, None, honesty.CODE_READS_PAIR),
    (cards.MODEL_TEMPLATE, EXAMPLE_CARDS, honesty.CODE_READS_PAIR),
    (cards.TRAJECTORY_TEMPLATE, None, honesty.CODE_READS_TRAJECTORY),
]


@pytest.mark.parametrize("template, cards_dir, code_reads", CASES)
def test_every_figure_a_template_reads_is_checked(contexts, template, cards_dir, code_reads):
    ctx = contexts[template]
    ev = ctx["ev"]
    honesty.check_card_figures(ev, "eval.json", template, code_reads, cards_dir)  # the complete report passes
    log: set = set()
    body = cards.render_body(template, {**ctx, "ev": _Rec(ev, (), log)}, cards_dir)
    assert body.strip() and "None" not in body.replace("`None`", "")
    assert len(log) > 10
    for path in sorted(log, key=str):
        broken = _delete(ev, path)
        if broken is None:
            continue
        with _note(path), pytest.raises(ReleaseError):
            honesty.check_card_figures(broken, "eval.json", template, code_reads, cards_dir)
            cards.render_body(template, {**ctx, "ev": broken}, cards_dir)
    # a figure printed as null is refused too (unless the template itself tests it for none)
    reads = template_reads(cards.environment(cards_dir), template)
    for path in sorted(log, key=str):
        star = ".".join("*" if isinstance(k, int) else str(k) for k in path)
        nulled = _null(ev, path)
        if nulled is None or star in reads.present:
            continue
        with _note(path), pytest.raises(ReleaseError):
            honesty.check_card_figures(nulled, "eval.json", template, code_reads, cards_dir)
            cards.render_body(template, {**ctx, "ev": nulled}, cards_dir)
    # and the early check asks for nothing the template does not read
    dotted = {".".join(str(k) for k in p) for p in log}
    starred = {".".join("*" if isinstance(k, int) else str(k) for k in p) for p in log}
    for path in [*reads.required, *reads.present]:
        assert path in starred or any(fnmatch.fnmatch(d, path) for d in dotted), path


def test_the_dataset_template_renders_its_context(contexts):
    ctx = contexts[cards.DATASET_TEMPLATE]
    body = cards.render_body(cards.DATASET_TEMPLATE, ctx)
    assert "| `data/rl.parquet` | rl | 2 | doc_id, position |" in body
    assert (
        "- corpus: `bundled`, 2 documents; hubkit bundled corpus, licence CC0-1.0 (written for hubkit" in body
    )
    for key in ("tables", "total_rows", "license", "text"):
        with pytest.raises(ReleaseError, match=key):
            cards.render_body(cards.DATASET_TEMPLATE, {k: v for k, v in ctx.items() if k != key})


def test_templates_are_real_package_data():
    packaged = cards.DEFAULT_CARDS
    assert packaged == REPO / "hubkit" / "release" / "templates" and not packaged.is_symlink()
    names = {p.name for p in packaged.glob("*.md.j2")}
    assert {cards.MODEL_TEMPLATE, cards.TRAJECTORY_TEMPLATE, cards.DATASET_TEMPLATE, "_eval.md.j2"} <= names
    assert not (REPO / "cards").exists()  # one copy: the package's
    assert '"release/templates/*.md.j2"' in (REPO / "pyproject.toml").read_text()  # shipped in the wheel
