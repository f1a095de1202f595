"""Round-trip figures computed from reconstructions, and the fixed-yardstick section of a pair eval.

An AR trained alongside the AV in RL (GRPO's ``train_ar``) learned to reward that AV's texts: its
figures flatter the pair and are not comparable across runs. `fixed_ar_section` reads the round
trip's own explanations with a frozen AR (the SFT AR the run started from) and reports the same
headline figures, so both stand side by side in eval.json, the card and the trajectory plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hubkit.eval.ablations import content_sensitivity, reconstruct_unique
from hubkit.eval.identification import from_ranks, ranks
from hubkit.eval.metrics import cosine_rows, fve, nmse_rows, summarize
from hubkit.eval.sections import FixedAR, PointFixedAR, RoundTripAll, RoundTripBlock
from hubkit.meta import NLAMeta


def round_trip_block(
    v, v_hat, cos, nmse, mask, n_boot: int, seed: int, cls: type[RoundTripBlock] = RoundTripBlock
) -> RoundTripBlock:
    """Cosine, normalised MSE and FVE over the rows in `mask`, each with its bootstrap interval."""
    if mask.sum() == 0:
        return cls(n=0, cos=summarize([]), nmse=summarize([]), fve=None)
    return cls(
        n=int(mask.sum()),
        cos=summarize(cos[mask], n_boot=n_boot, seed=seed),
        nmse=summarize(nmse[mask], n_boot=n_boot, seed=seed + 1),
        fve=fve(v[mask], v_hat[mask], n_boot=n_boot, seed=seed + 2),
    )


def yardstick_name(source) -> str:
    """How eval.json and cards name a frozen AR: a local folder by its last two parts (``ar/step_000100``,
    no machine path), a Hub repo id as given."""
    path = Path(str(source))
    return f"{path.parent.name}/{path.name}" if path.is_dir() else str(source)


def co_trained(meta: NLAMeta) -> bool:
    """Whether an AR was trained in RL against the AV it scored (its last stage was GRPO)."""
    return meta.role == "ar" and meta.training.stage == "grpo"


def fixed_ar_section(
    fixed_ar,
    name: str,
    evaluated_ar_meta: NLAMeta,
    vectors: np.ndarray,
    texts: list[str],
    *,
    seed: int,
    n_boot: int,
    batch_size: int,
) -> FixedAR:
    """The round trip's explanations `texts` read by `fixed_ar`: round trip, identification, controls."""
    v_hat = reconstruct_unique(fixed_ar, texts, batch_size)
    cos, nmse = cosine_rows(vectors, v_hat), nmse_rows(vectors, v_hat)
    every = np.ones(len(texts), dtype=bool)
    stats = {"seed": seed, "n_boot": n_boot, "batch_size": batch_size}
    cs = content_sensitivity(
        fixed_ar, vectors, texts, real_reconstructions=v_hat, source="av_fixed_ar", **stats
    )
    return FixedAR(
        ar=name,
        evaluated_ar_co_trained=co_trained(evaluated_ar_meta),
        round_trip=round_trip_block(vectors, v_hat, cos, nmse, every, n_boot, seed, RoundTripAll),
        identification=from_ranks(ranks(vectors, v_hat)),
        content_sensitivity=cs,
    )


def point_figures(section: FixedAR | None) -> PointFixedAR | None:
    """A trajectory point's headline figures under the fixed AR."""
    if section is None:
        return None
    return PointFixedAR(
        cos=section.round_trip.cos,
        fve=section.round_trip.fve,
        top1=section.identification.at(1).accuracy,
        real_minus_empty=section.content_sensitivity.control("empty").delta.mean,
    )
