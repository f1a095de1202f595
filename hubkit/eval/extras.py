"""The optional sections of a pair eval (paraphrase, claim ablation, cross-pair matrix, frozen AR, spliced
loss, judged claims): `Extras` says which to run, each is one entry of `SECTIONS`, and all read the round
trip's own explanations and reconstructions, so nothing is generated twice."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hubkit.data.labelers import Labeler
from hubkit.errors import DataError
from hubkit.eval import judge, spliced
from hubkit.eval.claims import MAX_CLAIMS, claim_ablation
from hubkit.eval.cross_pair import Half, check_cross, cross_pair_matrix
from hubkit.eval.generation import Generation
from hubkit.eval.paraphrase import paraphrase_sensitivity
from hubkit.eval.sections import OPTIONAL_SECTIONS
from hubkit.eval.table import EvalTable
from hubkit.eval.trained_on import TrainedOn, from_halves
from hubkit.eval.yardstick import fixed_ar_section, yardstick_name
from hubkit.meta import check_compatible
from hubkit.reconstructor import ActivationReconstructor
from hubkit.registry import Registry


@dataclass
class Extras:
    """Which optional sections a pair eval adds (all off by default)."""

    paraphraser: Labeler | None = None
    claim_ablation: bool = False
    max_claims: int = MAX_CLAIMS
    cross_avs: Mapping[str, Half] = field(default_factory=dict)
    cross_ars: Mapping[str, Half] = field(default_factory=dict)
    names: tuple[str, str] = ("this AV", "this AR")  # the pair's own row and column in the matrix
    loader: Callable[[Path, str], Any] | None = None  # loads a cross half given as a folder
    fixed_ar: Any = None  # a loaded frozen AR (the SFT AR) reading the round trip's explanations too
    fixed_ar_name: str = "frozen SFT AR"  # its folder or repo id, as eval.json records it
    spliced_loss: bool = False
    base_model: str | None = None  # where the base comes from for spliced loss (default: the AV's meta)
    judge: Labeler | None = None

    def load_fixed_ar(
        self, folder: str | Path, source: str | None = None, base_model=None, device=None, dtype=None
    ) -> Extras:
        """Load the frozen AR in `folder` (given as `source`, a repo id or path) as the yardstick that also
        reads every evaluated pair's explanations; named in eval.json without a machine path."""
        self.fixed_ar = ActivationReconstructor.from_pretrained(
            folder, base_model=base_model, device=device, dtype=dtype
        )
        self.fixed_ar_name = yardstick_name(source or folder)
        return self

    @property
    def cross(self) -> bool:
        return bool(self.cross_avs or self.cross_ars)

    def _halves(self, pair) -> tuple[dict, dict]:
        av_name, ar_name = self.names
        clash = [n for n, extra in ((av_name, self.cross_avs), (ar_name, self.cross_ars)) if n in extra]
        if clash:
            raise DataError(
                f"cross-pair name {clash[0]!r} is the evaluated pair's own; name the other halves differently"
            )
        return {av_name: pair.av, **self.cross_avs}, {ar_name: pair.ar, **self.cross_ars}

    def check(self, pair, table: EvalTable) -> None:
        """Refuse an incompatible cross-pair cell before anything is generated (`pair` may be a loaded pair,
        or ``av`` and ``ar`` checkpoint folders, checked from their metas before any weights load)."""
        if self.cross:
            check_cross(*self._halves(pair), table)
        if self.fixed_ar is not None:
            check_compatible(pair.av.meta, self.fixed_ar.meta)

    def trained_on(self) -> list[TrainedOn]:
        """What the cross-pair halves (besides the pair's own) name as their training tables."""
        halves = {f"cross AV {n}": h for n, h in self.cross_avs.items()}
        halves |= {f"cross AR {n}": h for n, h in self.cross_ars.items()}
        return from_halves(halves)

    def run(self, produced: Produced) -> dict[str, Any]:
        """The sections asked for, computed on what the round trip `produced` (explanations, reconstructions)."""
        return {name: s.run(self, produced) for name, s in SECTIONS.items() if s.wanted(self)}


@dataclass(frozen=True)
class Produced:
    """What the round trip of a pair eval produced, which every section reads."""

    pair: Any
    table: EvalTable
    details: list
    v_hat: np.ndarray
    gen: Generation
    n_boot: int
    progress: bool

    @property
    def vn(self) -> np.ndarray:
        return self.table.vectors.double().numpy()

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.details]

    @property
    def stats(self) -> dict[str, int]:
        return {"seed": self.gen.seed, "n_boot": self.n_boot}


@dataclass(frozen=True)
class Section:
    """An optional section: whether `Extras` asks for it, how it runs, its line(s) in the terminal headline
    (``None``: nothing to say), its per-row columns for rows.parquet and its flat headline figures for the
    `evaluate` results file (`hubkit.eval.results_file`)."""

    wanted: Callable[[Extras], bool]
    run: Callable[[Extras, Produced], Any]
    headline: Callable[[Any], str | None]
    columns: Callable[[Any], dict[str, Any]] = lambda section: {}
    results: Callable[[Any], dict[str, Any]] = lambda section: {}


SECTIONS: Registry[Section] = Registry("eval section")


def _signed(summary) -> str:
    return f"{summary.mean:+.4f}" if summary.mean is not None else "n/a"


def ci_text(x, fmt: str = ".4f") -> str:
    """`` [low, high]`` of a figure with an interval (``ci_low``, ``ci_high``), or nothing without one."""
    return f" [{x.ci_low:{fmt}}, {x.ci_high:{fmt}}]" if x.ci_low is not None else ""


def _rate(r) -> str:
    """``0.123 [0.100, 0.150]`` (or ``n/a``) for a judged-claims rate."""
    return "n/a" if r.value is None else f"{r.value:.3f}{ci_text(r, '.3f')}"


def _cross(x: Extras, d: Produced):
    avs, ars = x._halves(d.pair)
    names = {"av": x.names[0], "ar": x.names[1]}
    return cross_pair_matrix(
        avs, ars, d.table, generation=d.gen, n_boot=d.n_boot, this_pair=names,
        known={x.names[0]: d.details}, loader=x.loader, progress=d.progress,
    )  # fmt: skip


SECTIONS.add("paraphrase", Section(
    wanted=lambda x: x.paraphraser is not None,
    run=lambda x, d: paraphrase_sensitivity(
        d.pair.ar, d.vn, d.texts, x.paraphraser, real_reconstructions=d.v_hat,
        batch_size=d.gen.ar_batch_size, **d.stats,
    ),
    headline=lambda ps: (
        f"paraphrase ({ps.labeler}): cos change {_signed(ps.delta)}{ci_text(ps.delta)} on {ps.n_used}/{ps.n} "
        f"rows {ps.statuses}; top-1 flips {ps.flips[0].flip_share:.1%}; {ps.verdict}"
    ),
    columns=lambda ps: {
        "paraphrase": pa.array(ps.texts, pa.string()),
        "paraphrase_status": pa.array(ps.row_statuses, pa.string()),
        "cos_paraphrase": pa.array(ps.per_row["cos_paraphrase"], from_pandas=True),
    },
    results=lambda ps: {
        "paraphrase_labeler": ps.labeler, "paraphrase_n_used": ps.n_used, "paraphrase_statuses": ps.statuses,
        "paraphrase_cos_delta": ps.delta.mean, "paraphrase_cos_delta_ci_low": ps.delta.ci_low,
        "paraphrase_cos_delta_ci_high": ps.delta.ci_high, "paraphrase_relative_change": ps.relative_change,
        "paraphrase_fve_delta": ps.fve.delta, "paraphrase_fve_delta_ci_low": ps.fve.ci_low,
        "paraphrase_fve_delta_ci_high": ps.fve.ci_high,
        **{f"paraphrase_flip_share_top{fl.k}": fl.flip_share for fl in ps.flips},
        "paraphrase_verdict": ps.verdict,
    },
))  # fmt: skip
SECTIONS.add("claim_ablation", Section(
    wanted=lambda x: x.claim_ablation,
    run=lambda x, d: claim_ablation(
        d.pair.ar, d.vn, d.texts, real_reconstructions=d.v_hat, max_claims=x.max_claims,
        batch_size=d.gen.ar_batch_size, **d.stats,
    ),
    headline=lambda ca: None if ca.delta.mean is None else (
        f"claim ablation: {ca.n_claims} claims, mean cosine carried {ca.delta.mean:+.4f}; "
        + ", ".join(f"pos {g.index}: {g.delta.mean:+.4f}" for g in ca.by_index)
    ),
    columns=lambda ca: {
        "claims": pa.array(ca.row_claims, pa.list_(pa.string())),
        "claim_deltas": pa.array(ca.per_row, pa.list_(pa.float64())),
    },
    results=lambda ca: {
        "claim_n_claims": ca.n_claims, "claim_cos_delta": ca.delta.mean, "claim_cos_delta_ci_low": ca.delta.ci_low,
        "claim_cos_delta_ci_high": ca.delta.ci_high, "claim_row_max_delta": ca.row_max_delta.mean,
        "claim_cos_delta_by_index": {g.index: g.delta.mean for g in ca.by_index},
    },
))  # fmt: skip
SECTIONS.add("cross_pair", Section(
    wanted=lambda x: x.cross, run=_cross, headline=lambda cp: cp.headline(),
    results=lambda cp: {"cross_pair": [
        {"av": c.av, "ar": c.ar, "cos_mean": c.cos.mean, "fve": c.fve.value, "top1": c.identification[0].accuracy}
        for c in cp.cells
    ]},
))  # fmt: skip
SECTIONS.add("fixed_ar", Section(
    wanted=lambda x: x.fixed_ar is not None,
    run=lambda x, d: fixed_ar_section(
        x.fixed_ar, x.fixed_ar_name, d.pair.ar.meta, d.vn, d.texts, batch_size=d.gen.ar_batch_size, **d.stats
    ),
    headline=lambda fa: (
        f"frozen AR ({fa.ar}) on the same explanations: cos {fa.round_trip.cos.mean:.4f}, FVE "
        f"{fa.round_trip.fve.value:.4f}, top-1 {fa.identification.at(1).accuracy:.3f}, real − empty "
        f"{fa.content_sensitivity.control('empty').delta.mean:+.4f}"
        + (" (the pair's own AR was trained alongside in RL)" if fa.evaluated_ar_co_trained else "")
    ),
    columns=lambda fa: {"cos_fixed_ar": pa.array(fa.content_sensitivity.per_row["real"])},
))  # fmt: skip
SECTIONS.add("spliced_loss", Section(
    wanted=lambda x: x.spliced_loss,
    run=lambda x, d: spliced.eval_spliced_loss(
        d.pair, d.table.prefixes, d.table.vectors, d.v_hat, base_model=x.base_model, **d.stats
    ),
    headline=lambda sl: f"spliced loss ({sl.n} rows): {sl.headline()}",
    columns=spliced.row_columns,
))  # fmt: skip
SECTIONS.add("judge", Section(
    wanted=lambda x: x.judge is not None,
    run=lambda x, d: judge.judge_claims(x.judge, d.table.prefixes, d.texts, max_claims=x.max_claims, **d.stats),
    headline=lambda jc: (
        f"judged claims ({jc.judge}, {jc.n_claims} claims): precision {_rate(jc.claim_precision)}, "
        f"hallucination {_rate(jc.hallucination_rate)} {jc.verdicts}"
    ),
    columns=judge.row_columns,
))  # fmt: skip
assert set(SECTIONS) == set(OPTIONAL_SECTIONS), "every optional eval.json section has one entry"


def row_columns(sections: Mapping[str, Any]) -> dict[str, Any]:
    """Per-row columns of the sections that were run, for rows.parquet."""
    return {k: v for name, s in sections.items() for k, v in SECTIONS.get(name).columns(s).items()}


def headlines(figures) -> list[str]:
    """Headline lines of the optional sections present in a pair report's figures."""
    lines = (
        s.headline(getattr(figures, name))
        for name, s in SECTIONS.items()
        if getattr(figures, name) is not None
    )
    return [line for line in lines if line is not None]
