"""Judged claims: does each claim of an explanation hold for the text the vector was read from?

A judge (any `Labeler`) says per claim (`claims.claims`) whether the row's ``prefix`` **supports** it,
leaves it **unsupported** or **contradicts** it. Rates (precision, hallucination, unsupported) carry a
bootstrap interval over rows, since the claims of one explanation are not independent; a reply without a
verdict word is ``unparsed`` and left out of the rates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hubkit.data.labelers import Labeler, LabelerError
from hubkit.errors import DataError
from hubkit.eval.claims import MAX_CLAIMS, claims
from hubkit.eval.metrics import DEFAULT_BOOT, Plain, bootstrap_ci

VERDICTS = ("supported", "unsupported", "contradicted")
UNPARSED = "unparsed"
JUDGE_PROMPT = """You check a claim about a text against that text alone.

<text>{text}</text>

<claim>{claim}</claim>

Is the claim supported by the text, unsupported (the text does not say), or contradicted by the text? \
Answer with one word inside <verdict></verdict> tags: supported, unsupported or contradicted."""
_TAGGED = re.compile(r"<verdict>\s*([a-z ]+?)\s*(?:</verdict>|$)", re.I)
_WORD = re.compile(r"\b(not supported|unsupported|contradicted|contradicts|supported)\b", re.I)


def judge_messages(text: str, claim: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": JUDGE_PROMPT.format(text=text, claim=claim)}]


def parse_verdict(reply: str) -> str:
    """``supported``, ``unsupported`` or ``contradicted`` from a judge's reply (inside the tags when present,
    else its first verdict word); ``unparsed`` when it has none."""
    reply = reply if isinstance(reply, str) else ""
    tagged = _TAGGED.search(reply)
    for candidate in ([tagged.group(1)] if tagged else []) + [reply]:
        if m := _WORD.search(candidate):
            word = m.group(1).lower()
            return {"not supported": "unsupported", "contradicts": "contradicted"}.get(word, word)
    return UNPARSED


@dataclass
class Rate:
    """A share of judged claims with a row-resampling bootstrap interval."""

    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass
class JudgedClaims(Plain):
    """The eval.json section ``figures.judge``."""

    judge: str
    n_rows: int
    n_rows_with_claims: int
    n_claims: int  # judged, unparsed included
    n_claims_skipped: int  # past `max_claims` in their row
    max_claims: int
    verdicts: dict[str, int]  # supported / unsupported / contradicted / unparsed
    claim_precision: Rate
    hallucination_rate: Rate
    unsupported_rate: Rate
    rows_with_contradiction: float | None
    row_claims: list[list[str]] = field(default_factory=list, repr=False)
    row_verdicts: list[list[str]] = field(default_factory=list, repr=False)


def _rate(hits: np.ndarray, judged: np.ndarray, n_boot: int, seed: int) -> Rate:
    """sum(hits) / sum(judged) over rows, with a percentile bootstrap that resamples the rows with claims."""
    total = judged.sum()
    if total == 0:
        return Rate(None, None, None)
    rows = np.nonzero(judged)[0]
    if len(rows) < 2:
        return Rate(float(hits.sum() / total), None, None)
    h, j = hits[rows], judged[rows]

    def stat(idx: np.ndarray) -> np.ndarray:
        i = idx.astype(np.int64)
        return h[i].sum(axis=1) / j[i].sum(axis=1)

    lo, hi = bootstrap_ci(np.arange(len(rows)), stat=stat, n_boot=n_boot, seed=seed)
    return Rate(float(hits.sum() / total), lo, hi)


def judge_claims(
    judge: Labeler,
    sources: Sequence[str],
    explanations: Sequence[str],
    *,
    max_claims: int = MAX_CLAIMS,
    seed: int = 0,
    n_boot: int = DEFAULT_BOOT,
) -> JudgedClaims:
    """Judge every claim (up to `max_claims` per row) of each explanation against its source text."""
    if len(sources) != len(explanations):
        raise DataError(f"{len(explanations)} explanations for {len(sources)} source texts")
    if max_claims < 1:
        raise DataError(f"max_claims must be at least 1, got {max_claims}")
    all_claims = [claims(t) for t in explanations]
    kept = [cs[:max_claims] for cs in all_claims]
    asks = list(dict.fromkeys((s, c) for s, cs in zip(sources, kept) for c in cs))
    replies = judge.chat([judge_messages(s, c) for s, c in asks]) if asks else []
    if len(replies) != len(asks):
        raise LabelerError(f"{judge.name}: answered {len(replies)} of {len(asks)} judge requests")
    verdict = {a: parse_verdict(r) for a, r in zip(asks, replies)}
    row_verdicts = [[verdict[(s, c)] for c in cs] for s, cs in zip(sources, kept)]
    counts = Counter(v for row in row_verdicts for v in row)
    judged = np.array([sum(v != UNPARSED for v in row) for row in row_verdicts], dtype=np.float64)

    def hits(word: str) -> np.ndarray:
        return np.array([sum(v == word for v in row) for row in row_verdicts], dtype=np.float64)

    contra = hits("contradicted")
    return JudgedClaims(
        judge=judge.name,
        n_rows=len(sources),
        n_rows_with_claims=sum(1 for row in row_verdicts if row),
        n_claims=sum(len(row) for row in row_verdicts),
        n_claims_skipped=sum(len(a) - len(k) for a, k in zip(all_claims, kept)),
        max_claims=max_claims,
        verdicts={w: int(counts.get(w, 0)) for w in (*VERDICTS, UNPARSED)},
        claim_precision=_rate(hits("supported"), judged, n_boot, seed),
        hallucination_rate=_rate(contra, judged, n_boot, seed + 1),
        unsupported_rate=_rate(hits("unsupported"), judged, n_boot, seed + 2),
        rows_with_contradiction=float(np.mean(contra[judged > 0] > 0)) if (judged > 0).any() else None,
        row_claims=kept,
        row_verdicts=row_verdicts,
    )


def row_columns(jc: JudgedClaims) -> dict:
    """Per-row columns for rows.parquet: the judged claims, their verdicts and the row's precision."""
    import pyarrow as pa

    precision = []
    for row in jc.row_verdicts:
        judged = [v for v in row if v != UNPARSED]
        precision.append(sum(v == "supported" for v in judged) / len(judged) if judged else None)
    return {
        "judge_claims": pa.array(jc.row_claims, pa.list_(pa.string())),
        "judge_verdicts": pa.array(jc.row_verdicts, pa.list_(pa.string())),
        "judge_precision": pa.array(precision, pa.float64()),
    }
