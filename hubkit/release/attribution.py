"""Attribution of the training data: each table's corpus, with its licence and URL, for the card.

A table's sidecar (``<table>.parquet.json``) names the corpus it was drawn from and the labelers that
wrote its explanations. The licence and URL come from the sidecar when it records them
(``corpus.license``, ``corpus.url``), else from the spec's ``corpora.<name>``, else from the corpora
hubkit ships; a table whose corpus has no licence anywhere is refused, since the card would publish
data without saying under which terms.
"""

from __future__ import annotations

import re
from pathlib import Path

from hubkit.data.sidecar import read_sidecar, sidecar_path
from hubkit.errors import DataError
from hubkit.release.errors import ReleaseError
from hubkit.release.provenance import table_info
from hubkit.release.spec import CorpusCredit, LoadedSpec

# Corpora that ship with hubkit (hubkit/corpus/README.md states the licence).
KNOWN_CORPORA: dict[str, CorpusCredit] = {
    "bundled": CorpusCredit(
        license="CC0-1.0",
        url=None,
        name="hubkit bundled corpus",
        attribution="written for hubkit; public-domain dedication",
    ),
}
_HEAD = re.compile(r"\[[^\]]*\]$")  # `bundled[:40]`: the first 40 documents of `bundled`


def corpus_key(name: str) -> str:
    """The corpus a sidecar names, without a ``[:n]`` slice."""
    return _HEAD.sub("", name)


def _credit(side, ls: LoadedSpec) -> CorpusCredit | None:
    corpus = side.corpus
    recorded = getattr(corpus, "license", None)
    if recorded:
        return CorpusCredit(license=recorded, url=getattr(corpus, "url", None), name=corpus.name)
    key = corpus_key(corpus.name)
    return ls.spec.corpora.get(corpus.name) or ls.spec.corpora.get(key) or KNOWN_CORPORA.get(key)


def credit_for(side, ls: LoadedSpec, field_name: str, table: str) -> CorpusCredit:
    """The corpus credit of one table's sidecar, refused (naming the spec field to add) when unknown."""
    credit = _credit(side, ls)
    if credit is None:
        key = corpus_key(side.corpus.name)
        raise ReleaseError(
            f"{ls.path}: field `corpora.{key}.license` is needed: {field_name} {table} comes from corpus "
            f"{side.corpus.name!r}, whose sidecar records no licence; add "
            f"`corpora: {{{key}: {{license: <id>, url: <where it is published>}}}}`"
        )
    return credit


def training_data(ls: LoadedSpec) -> list[dict]:
    """``[{name, path, sha256, rows, corpus, license, url, attribution, labelers}]`` per training table.

    Tables without a sidecar are listed with ``corpus: None`` (their origin is not recorded).
    """

    out = []
    for i, value in enumerate(ls.spec.training_data):
        path = ls.existing(value, f"training_data[{i}]", "file")
        info = table_info(path)
        info.update(corpus=None, license=None, url=None, attribution=None, labelers=None)
        if sidecar_path(path).is_file():
            try:
                side = read_sidecar(path)
            except DataError as exc:
                raise ReleaseError(f"{ls.path}: field `training_data[{i}]`: {exc}") from exc
            credit = credit_for(side, ls, "training table", Path(value).name)
            info.update(
                corpus=credit.name or side.corpus.name,
                license=credit.license,
                url=credit.url,
                attribution=credit.attribution,
                labelers=side.labeling
                and sorted({side.labeling.labeler, side.labeling.auditor} - {"", None}),
            )
        out.append(info)
    return out
