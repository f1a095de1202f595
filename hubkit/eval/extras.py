"""The optional sections of a pair eval: paraphrase sensitivity, claim ablation, a cross-pair matrix,
spliced loss and judged claims.

`Extras` says which to run; `evaluate_pair` checks it before any work (`check`) and runs it on the
round trip's own explanations and reconstructions (`run`), so nothing is generated twice. Each
section lands in eval.json under ``figures.<name>``, only when it was run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hubkit.errors import DataError
from hubkit.eval.claims import MAX_CLAIMS, ClaimAblation, claim_ablation
from hubkit.eval.cross_pair import CrossPair, Half, check_cross, cross_pair_matrix
from hubkit.eval.generation import Generation
from hubkit.eval.judge import JudgedClaims, judge_claims
from hubkit.eval.judge import row_columns as judge_columns
from hubkit.eval.paraphrase import ParaphraseSensitivity, paraphrase_sensitivity
from hubkit.eval.spliced import SplicedLoss, eval_spliced_loss
from hubkit.eval.spliced import row_columns as spliced_columns
from hubkit.eval.table import EvalTable
from hubkit.eval.trained_on import TrainedOn, from_halves
from hubkit.eval.yardstick import fixed_ar_section

if TYPE_CHECKING:
    from hubkit.data.labelers import Labeler

SECTIONS = ("paraphrase", "claim_ablation", "cross_pair", "fixed_ar", "spliced_loss", "judge")


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
        from hubkit.eval.yardstick import yardstick_name
        from hubkit.reconstructor import ActivationReconstructor

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
        """Refuse an incompatible cross-pair cell before anything is generated.

        `pair` may be a loaded pair or anything with ``av`` and ``ar`` checkpoint folders (checked
        from their metas alone, before any weights are loaded).
        """
        if self.cross:
            check_cross(*self._halves(pair), table)
        if self.fixed_ar is not None:
            from hubkit.meta import check_compatible

            check_compatible(pair.av.meta, self.fixed_ar.meta)

    def trained_on(self) -> list[TrainedOn]:
        """What the cross-pair halves (besides the pair's own) name as their training tables."""
        halves = {f"cross AV {n}": h for n, h in self.cross_avs.items()}
        halves |= {f"cross AR {n}": h for n, h in self.cross_ars.items()}
        return from_halves(halves)

    def run(
        self,
        pair,
        table: EvalTable,
        details: list,
        v_hat: np.ndarray,
        generation: Generation,
        seed: int,
        n_boot: int,
        progress: bool = False,
    ) -> dict[str, ParaphraseSensitivity | ClaimAblation | CrossPair | SplicedLoss | JudgedClaims]:
        """The sections asked for, computed on the round trip's explanations (`details`) and reconstructions."""
        vn = table.vectors.double().numpy()
        texts = [d.text for d in details]
        out: dict[str, Any] = {}
        if self.paraphraser is not None:
            out["paraphrase"] = paraphrase_sensitivity(
                pair.ar,
                vn,
                texts,
                self.paraphraser,
                real_reconstructions=v_hat,
                seed=seed,
                n_boot=n_boot,
                batch_size=generation.ar_batch_size,
            )
        if self.claim_ablation:
            out["claim_ablation"] = claim_ablation(
                pair.ar,
                vn,
                texts,
                real_reconstructions=v_hat,
                max_claims=self.max_claims,
                seed=seed,
                n_boot=n_boot,
                batch_size=generation.ar_batch_size,
            )
        if self.fixed_ar is not None:
            out["fixed_ar"] = fixed_ar_section(
                self.fixed_ar,
                self.fixed_ar_name,
                pair.ar.meta,
                vn,
                texts,
                seed=seed,
                n_boot=n_boot,
                batch_size=generation.ar_batch_size,
            )
        if self.spliced_loss:
            out["spliced_loss"] = eval_spliced_loss(
                pair,
                table.prefixes,
                table.vectors,
                v_hat,
                base_model=self.base_model,
                n_boot=n_boot,
                seed=seed,
            )
        if self.judge is not None:
            out["judge"] = judge_claims(
                self.judge, table.prefixes, texts, max_claims=self.max_claims, seed=seed, n_boot=n_boot
            )
        if self.cross:
            avs, ars = self._halves(pair)
            out["cross_pair"] = cross_pair_matrix(
                avs,
                ars,
                table,
                generation=generation,
                seed=seed,
                n_boot=n_boot,
                this_pair={"av": self.names[0], "ar": self.names[1]},
                known={self.names[0]: details},
                loader=self.loader,
                progress=progress,
            )
        return out


def row_columns(sections: Mapping[str, Any]) -> dict[str, Any]:
    """Per-row columns of the sections for rows.parquet."""
    import pyarrow as pa

    cols: dict[str, Any] = {}
    ps = sections.get("paraphrase")
    if ps is not None:
        cols["paraphrase"] = pa.array(ps.texts, pa.string())
        cols["paraphrase_status"] = pa.array(ps.row_statuses, pa.string())
        cols["cos_paraphrase"] = pa.array(ps.per_row["cos_paraphrase"], from_pandas=True)
    fa = sections.get("fixed_ar")
    if fa is not None:
        cols["cos_fixed_ar"] = pa.array(fa.content_sensitivity.per_row["real"])
    ca = sections.get("claim_ablation")
    if ca is not None:
        cols["claims"] = pa.array(ca.row_claims, pa.list_(pa.string()))
        cols["claim_deltas"] = pa.array(ca.per_row, pa.list_(pa.float64()))
    if sections.get("spliced_loss") is not None:
        cols.update(spliced_columns(sections["spliced_loss"]))
    if sections.get("judge") is not None:
        cols.update(judge_columns(sections["judge"]))
    return cols
