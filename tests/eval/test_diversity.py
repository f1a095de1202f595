from collections import Counter

import pytest

from hubkit.eval.diversity import distinct_n, diversity

TEXTS = [
    "The token is a noun about cats.",
    "The token is a noun about cats.",
    "The token is a verb in code.",
    "  A number in a list  ",
    "",
    "a number in a list",
]


def test_diversity_against_independent_counts():
    d = diversity(TEXTS, stem_words=3)
    stripped = [t.strip() for t in TEXTS]
    assert d.n == 6 and d.n_empty == 1
    assert d.distinct == len(set(stripped)) == 5
    assert d.duplicate_rate == pytest.approx(1 / 6)
    stems = {" ".join(t.lower().split()[:3]) for t in stripped}
    assert d.distinct_stems == len(stems) == 3  # "the token is", "a number in", ""
    assert d.most_common[0] == {"text": "The token is a noun about cats.", "count": 2}


def test_distinct_n_against_independent_ngrams():
    words = [t.lower().split() for t in TEXTS]
    for n in (1, 2, 3):
        grams = [tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)]
        assert distinct_n(TEXTS, n) == pytest.approx(len(set(grams)) / len(grams))
    assert distinct_n(["", "one"], 2) == 0.0


def test_collapsed_av_is_visible():
    d = diversity(["same words here"] * 10)
    assert d.distinct == 1 and d.duplicate_rate == 0.9 and d.distinct_stems == 1
    assert d.distinct_n["1"] == pytest.approx(3 / 30)
    assert Counter(["same words here"] * 10).most_common(1)[0][1] == d.most_common[0]["count"]
