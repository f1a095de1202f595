"""Evaluation of NLAs: honest numbers that say whether an NLA reads its vectors at all.

Entry points: `pair_eval` (one pair), `trajectory` (every checkpoint of a run), `cross_pair_eval` (AVs × ARs),
each taking one `generation.Generation` and writing eval.json (`sections` are its typed figures, `report`
reads and writes it), rows.parquet, `plots` and the `evaluate` results file.
"""

from __future__ import annotations

from hubkit.lazy import lazy_exports

_EXPORTS = {
    "evaluate_pair": "hubkit.eval.pair_eval",
    "evaluate_trajectory": "hubkit.eval.trajectory",
    "evaluate_cross_pair": "hubkit.eval.cross_pair_eval",
    "Generation": "hubkit.eval.generation",
    "Extras": "hubkit.eval.extras",
    "paraphrase_sensitivity": "hubkit.eval.paraphrase",
    "claim_ablation": "hubkit.eval.claims",
    "EvalReport": "hubkit.eval.report",
    "read_eval": "hubkit.eval.report",
    "verify": "hubkit.eval.report",
    "EvalTable": "hubkit.eval.table",
    "content_sensitivity": "hubkit.eval.ablations",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
