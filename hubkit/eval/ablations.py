"""Content sensitivity: does the AR's output depend on what the explanation says?

The AR's cosine to each row's vector on the real explanation is compared with four controls (`CONDITIONS`),
per row, with paired bootstrap intervals. An AR that ignores its input scores the same on every control;
a published 0.44 round trip that an empty string also reached would show here. Any object with
``reconstruct(texts) -> Tensor`` serves as the AR.
"""

from __future__ import annotations

import inspect
import string
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from hubkit.errors import DataError
from hubkit.eval.metrics import DEFAULT_BOOT, Plain, Summary, as_matrix, cosine_rows, summarize

CONDITIONS = {
    "empty": "the empty string",
    "natural": "an unrelated natural sentence (fixed list, one drawn per row)",
    "nonsense": "random letter-strings with the real explanation's word count",
    "other_row": "the explanation of a different row (seeded derangement)",
}
# Below this |mean delta| a control counts as indistinguishable from the real explanation.
INSENSITIVE_TOL = 0.01

NATURAL_TEXT = (
    "The train to the coast leaves every morning at seven and returns before dark.",
    "She planted tomatoes along the south wall where the sun stays longest.",
    "Heavy rain closed the mountain pass for three days last winter.",
    "The committee will publish its annual report at the end of the month.",
    "He found an old map of the city folded inside a library book.",
    "Bread rises faster in a warm kitchen than in a cold one.",
    "The museum opens a new exhibition of early photographs next week.",
    "Most of the village gathered in the square to watch the parade.",
    "The bridge was painted bright red so ships could see it in fog.",
    "A small bakery on the corner sells fresh rolls before sunrise.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "Our neighbours adopted a grey cat that sleeps on the porch all day.",
    "The river floods the low fields almost every spring.",
    "Students lined up outside the hall to collect their exam results.",
    "The old lighthouse was turned into a small hotel with six rooms.",
    "Farmers in the valley grow apples, pears and a little barley.",
    "The football match was delayed by twenty minutes because of the storm.",
    "A letter arrived from her cousin who had moved abroad years ago.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Children played in the park until the street lights came on.",
    "The hikers reached the summit just as the clouds began to clear.",
    "A new bus route connects the hospital with the central station.",
    "He repaired the bicycle chain with a borrowed set of tools.",
    "The festival ends with fireworks over the harbour at midnight.",
)


@runtime_checkable
class Reconstructor(Protocol):
    """Anything that maps explanation texts to vectors ``[N, d]`` (an `ActivationReconstructor`, or a test double)."""

    def reconstruct(self, texts: list[str]) -> torch.Tensor: ...


def reconstruct_unique(ar: Reconstructor, texts: list[str], batch_size: int | None = None) -> np.ndarray:
    """AR outputs for `texts` as float64 ``[N, d]``, running each distinct text once (the AR is deterministic),
    sorted by length so a batch pads little."""
    if not isinstance(ar, Reconstructor):
        raise TypeError(f"{type(ar).__name__} has no `reconstruct(texts)` method")
    unique = sorted(dict.fromkeys(texts), key=len)
    kwargs = {}
    if batch_size is not None and "batch_size" in inspect.signature(ar.reconstruct).parameters:
        kwargs["batch_size"] = batch_size
    out = ar.reconstruct(unique, **kwargs) if unique else torch.empty(0, 0)
    mat = as_matrix(out, "AR outputs")
    if mat.shape[0] != len(unique):
        raise DataError(f"the AR returned {mat.shape[0]} vectors for {len(unique)} texts")
    where = {t: i for i, t in enumerate(unique)}
    return mat[[where[t] for t in texts]]


def ar_reads(
    ar: Reconstructor, vectors, explanations, real_reconstructions=None, batch_size: int | None = None
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(vectors, explanations, the AR's reconstructions of them), one of each per row: where every AR control
    starts. `real_reconstructions`, when already computed, saves the AR a pass."""
    v = as_matrix(vectors)
    texts = list(explanations)
    if len(texts) != v.shape[0]:
        raise DataError(f"{len(texts)} explanations for {v.shape[0]} vectors")
    if real_reconstructions is not None:
        return v, texts, as_matrix(real_reconstructions, "real reconstructions")
    return v, texts, reconstruct_unique(ar, texts, batch_size)


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (Sattolo's algorithm: one random cycle)."""
    if n < 2:
        raise DataError(f"a different-row control needs at least 2 rows, got {n}")
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def nonsense_texts(word_counts: list[int], rng: np.random.Generator) -> list[str]:
    """One string of random lowercase 'words' (2–8 letters) per row, with that row's word count (at least 3)."""
    letters = np.array(list(string.ascii_lowercase))

    def word() -> str:
        return "".join(rng.choice(letters, size=int(rng.integers(2, 9))))

    return [" ".join(word() for _ in range(max(3, n))) for n in word_counts]


@dataclass
class Control:
    name: str
    description: str
    cos: Summary  # the AR's cosine on this control
    delta: Summary  # per-row real − control, paired bootstrap interval
    ratio_to_real: float | None  # mean control cosine / mean real cosine (share an input-blind AR would get)
    reads: bool | None  # interval of the delta lies above zero


@dataclass
class ContentSensitivity(Plain):
    source: str  # whose explanations were read: "av" (round trip) or "reference" (the table's)
    n: int
    real: Summary
    controls: list[Control]
    verdict: str  # "reads_input" | "ignores_input" | "partial" | "undetermined"
    per_row: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    texts: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def control(self, name: str) -> Control:
        for c in self.controls:
            if c.name == name:
                return c
        raise KeyError(f"no control {name!r} (have {[c.name for c in self.controls]})")


def verdict(controls: list[Control]) -> str:
    """``reads_input`` when every delta interval is above zero; ``ignores_input`` when none is distinguishable."""
    if any(c.delta.ci_low is None for c in controls):
        return "undetermined"
    if all(c.delta.ci_low > 0 for c in controls):
        return "reads_input"
    if all(c.delta.ci_low <= 0 <= c.delta.ci_high or abs(c.delta.mean) < INSENSITIVE_TOL for c in controls):
        return "ignores_input"
    return "partial"


def content_sensitivity(
    ar: Reconstructor,
    vectors,
    explanations: list[str],
    *,
    seed: int = 0,
    n_boot: int = DEFAULT_BOOT,
    real_reconstructions=None,
    batch_size: int | None = None,
    source: str = "av",
) -> ContentSensitivity:
    """The AR's cosine on real explanations against the four controls, with paired delta intervals; the
    different-row control reuses the real reconstructions, since the AR is deterministic."""
    v, explanations, real = ar_reads(ar, vectors, explanations, real_reconstructions, batch_size)
    n = v.shape[0]
    if n < 2:
        raise DataError(f"content sensitivity needs at least 2 rows, got {n}")
    rng = np.random.default_rng(seed)
    if real.shape != v.shape:
        raise DataError(
            f"the AR writes vectors of shape {real.shape[1:]} but the eval vectors have {v.shape[1:]}"
        )
    perm = derangement(n, rng)
    texts = {
        "empty": [""] * n,
        "natural": [NATURAL_TEXT[int(i)] for i in rng.integers(0, len(NATURAL_TEXT), size=n)],
        "nonsense": nonsense_texts([len(t.split()) for t in explanations], rng),
        "other_row": [explanations[i] for i in perm],
    }
    outputs = {k: reconstruct_unique(ar, texts[k], batch_size) for k in ("empty", "natural", "nonsense")}
    outputs["other_row"] = real[perm]
    cos_real = cosine_rows(v, real)
    per_row = {"real": cos_real}
    controls = []
    real_mean = float(cos_real.mean())
    for i, (name, desc) in enumerate(CONDITIONS.items()):
        c = cosine_rows(v, outputs[name])
        per_row[name] = c
        delta = summarize(cos_real - c, n_boot=n_boot, seed=seed + 1 + i)
        controls.append(
            Control(
                name=name,
                description=desc,
                cos=summarize(c, n_boot=n_boot, seed=seed + 11 + i),
                delta=delta,
                ratio_to_real=float(c.mean()) / real_mean if abs(real_mean) > 1e-12 else None,
                reads=None if delta.ci_low is None else delta.ci_low > 0,
            )
        )
    return ContentSensitivity(
        source=source,
        n=n,
        real=summarize(cos_real, n_boot=n_boot, seed=seed),
        controls=controls,
        verdict=verdict(controls),
        per_row=per_row,
        texts=texts,
    )
