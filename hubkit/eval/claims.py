"""Claim ablation: how much of the round trip each claim (line, then sentence) of an explanation carries.

For each claim the AR reads the explanation without it; ``cos(v, AR(full)) − cos(v, AR(without))`` is
what it carries (zero for every claim of an AR that ignores its input). At most `max_claims` per row are
ablated, which bounds the AR calls to ``rows × max_claims``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hubkit.errors import DataError
from hubkit.eval.ablations import Reconstructor, ar_reads, reconstruct_unique
from hubkit.eval.metrics import DEFAULT_BOOT, Plain, Summary, cosine_rows, summarize

MAX_CLAIMS = 8
# Positions at or past this index are pooled into one group ("5+") in the by-index summary.
POOL_INDEX = 5
TOP_CLAIMS = 5
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_claims(text: str) -> list[list[str]]:
    """Claims of `text` by line: ``[[sentence, …] per non-empty line]`` (whitespace inside kept as written)."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in _SENTENCE_END.split(line.strip()) if p.strip()]
        if parts:
            out.append(parts)
    return out


def claims(text: str) -> list[str]:
    """The claims of `text` in reading order."""
    return [c for line in split_claims(text) for c in line]


def without_claim(text: str, index: int) -> str:
    """`text` with its claim number `index` removed (lines joined by newlines, sentences by one space)."""
    lines = split_claims(text)
    n = sum(len(line) for line in lines)
    if not 0 <= index < n:
        raise DataError(f"claim {index} of an explanation with {n} claims")
    kept, first = [], 0
    for line in lines:
        rest = [c for i, c in enumerate(line, first) if i != index]
        first += len(line)
        if rest:
            kept.append(" ".join(rest))
    return "\n".join(kept)


@dataclass
class IndexGroup:
    index: str  # "0", "1", …, or "5+" (pooled)
    n: int
    delta: Summary


@dataclass
class TopClaim:
    row: int
    index: int
    claim: str
    delta: float


@dataclass
class ClaimAblation(Plain):
    n_rows: int
    n_rows_ablated: int
    n_rows_no_claim: int
    n_rows_single_claim: int
    n_claims: int  # ablated one by one
    n_claims_skipped: int  # past `max_claims` in their row
    max_claims: int
    cos_full: Summary  # rows with at least one claim
    delta: Summary  # every ablated claim: cos(full) − cos(without it)
    by_index: list[IndexGroup]
    row_max_delta: Summary  # per row: the claim that carries most
    row_mean_delta: Summary
    top_claims: list[TopClaim]
    per_row: list[list[float]] = field(default_factory=list, repr=False)  # deltas of each row's claims
    row_claims: list[list[str]] = field(default_factory=list, repr=False)


def claim_ablation(
    ar: Reconstructor,
    vectors,
    explanations: Sequence[str],
    *,
    real_reconstructions=None,
    max_claims: int = MAX_CLAIMS,
    seed: int = 0,
    n_boot: int = DEFAULT_BOOT,
    batch_size: int | None = None,
) -> ClaimAblation:
    """Drop each claim of each explanation in turn and measure the AR's cosine without it."""
    if max_claims < 1:
        raise DataError(f"max_claims must be at least 1, got {max_claims}")
    v, texts, full = ar_reads(ar, vectors, explanations, real_reconstructions, batch_size)
    n = v.shape[0]
    cos_full = cosine_rows(v, full)
    row_claims = [claims(t) for t in texts]
    jobs = [(r, j) for r, cs in enumerate(row_claims) for j in range(min(len(cs), max_claims))]
    ablated = [without_claim(texts[r], j) for r, j in jobs]
    deltas = np.empty(len(jobs))
    if jobs:
        out = reconstruct_unique(ar, ablated, batch_size)
        rows = np.array([r for r, _ in jobs])
        deltas = cos_full[rows] - cosine_rows(v[rows], out)
    per_row: list[list[float]] = [[] for _ in range(n)]
    groups: dict[str, list[float]] = {}
    for (r, j), d in zip(jobs, deltas):
        per_row[r].append(float(d))
        groups.setdefault(str(j) if j < POOL_INDEX else f"{POOL_INDEX}+", []).append(float(d))
    has = [i for i in range(n) if per_row[i]]
    by_index = [
        IndexGroup(k, len(ds), summarize(ds, n_boot=n_boot, seed=seed + 10 + i))
        for i, (k, ds) in enumerate(sorted(groups.items(), key=lambda kv: int(kv[0].rstrip("+"))))
    ]
    order = np.argsort(-deltas)[:TOP_CLAIMS] if jobs else []
    top = [
        TopClaim(jobs[i][0], jobs[i][1], row_claims[jobs[i][0]][jobs[i][1]], float(deltas[i])) for i in order
    ]
    return ClaimAblation(
        n_rows=n,
        n_rows_ablated=len(has),
        n_rows_no_claim=sum(1 for cs in row_claims if not cs),
        n_rows_single_claim=sum(1 for cs in row_claims if len(cs) == 1),
        n_claims=len(jobs),
        n_claims_skipped=sum(max(0, len(cs) - max_claims) for cs in row_claims),
        max_claims=max_claims,
        cos_full=summarize(cos_full[has], n_boot=n_boot, seed=seed),
        delta=summarize(deltas, n_boot=n_boot, seed=seed + 1),
        by_index=by_index,
        row_max_delta=summarize([max(per_row[i]) for i in has], n_boot=n_boot, seed=seed + 2),
        row_mean_delta=summarize([float(np.mean(per_row[i])) for i in has], n_boot=n_boot, seed=seed + 3),
        top_claims=top,
        per_row=per_row,
        row_claims=row_claims,
    )
