"""Explanation diversity: a collapsed AV writes one stock explanation (or opening) for everything."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Diversity:
    n: int
    n_empty: int
    distinct: int  # distinct full explanations
    distinct_frac: float
    duplicate_rate: float  # share of rows whose explanation also appears on an earlier row
    stem_words: int
    distinct_stems: int  # distinct openings (first `stem_words` words)
    distinct_stems_frac: float
    distinct_n: dict[str, float]  # "1", "2", "3": unique n-grams / all n-grams (over all rows)
    mean_words: float
    most_common: list[dict] = field(default_factory=list)  # [{text, count}], top 5


def words(text: str) -> list[str]:
    return text.lower().split()


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams of `texts` (0.0 when there are none)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity(texts: list[str], stem_words: int = 3) -> Diversity:
    """`Diversity` of a list of explanations (the AV's parsed texts, one per row)."""
    stripped = [t.strip() for t in texts]
    n = len(stripped)
    counts = Counter(stripped)
    stems = {tuple(words(t)[:stem_words]) for t in stripped}
    return Diversity(
        n=n,
        n_empty=sum(1 for t in stripped if not t),
        distinct=len(counts),
        distinct_frac=len(counts) / n if n else 0.0,
        duplicate_rate=(n - len(counts)) / n if n else 0.0,
        stem_words=stem_words,
        distinct_stems=len(stems),
        distinct_stems_frac=len(stems) / n if n else 0.0,
        distinct_n={str(k): distinct_n(stripped, k) for k in (1, 2, 3)},
        mean_words=sum(len(words(t)) for t in stripped) / n if n else 0.0,
        most_common=[{"text": t, "count": c} for t, c in counts.most_common(5)],
    )
