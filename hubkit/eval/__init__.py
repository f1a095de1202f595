"""Evaluation of NLAs: honest numbers that say whether an NLA reads its vectors at all.

`evaluate_pair` / `evaluate_trajectory` / `evaluate_cross_pair` run everything and write ``eval.json``
(schema ``hubkit.eval/1``), ``rows.parquet``, plots and an ``evaluate``-saved results file.

Map (imports run downwards; each module one idea):

- entry points: `run` (re-exports) → `pair_eval` (one pair), `trajectory` (every checkpoint of a run),
  `cross_pair_eval` (AVs × ARs, the matrix in `cross_pair`), each taking one `generation.Generation`;
  `extras` (the registry of optional sections of a pair eval); the CLI is `hubkit.cli.eval`
- what was read: `table` (eval table, row selection), `overlap` + `trained_on` (held-out or not),
  `records` (metas, checkpoints, hashes, loading a pair), `generation` (how the AV generates), `loss_curve`
- figures: `metrics` (cosine, normalised MSE, bootstrap, FVE, noise floor), `ablations` (content
  sensitivity), `paraphrase`, `claims`, `identification`, `diversity`, `trend`
- output: `sections` (typed eval.json sections, figure paths), `report` (EvalReport, eval.json, verify),
  `results_file` (`evaluate.save`), `plots`, `evaluate_module` (the metric for ``evaluate.load``)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "evaluate_pair": "hubkit.eval.run",
    "evaluate_trajectory": "hubkit.eval.run",
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

__all__ = [
    "EvalReport",
    "EvalTable",
    "Extras",
    "Generation",
    "claim_ablation",
    "content_sensitivity",
    "evaluate_cross_pair",
    "evaluate_pair",
    "evaluate_trajectory",
    "paraphrase_sensitivity",
    "read_eval",
    "verify",
]

if TYPE_CHECKING:
    from hubkit.eval.ablations import content_sensitivity
    from hubkit.eval.claims import claim_ablation
    from hubkit.eval.cross_pair_eval import evaluate_cross_pair
    from hubkit.eval.extras import Extras
    from hubkit.eval.generation import Generation
    from hubkit.eval.paraphrase import paraphrase_sensitivity
    from hubkit.eval.report import EvalReport, read_eval, verify
    from hubkit.eval.run import evaluate_pair, evaluate_trajectory
    from hubkit.eval.table import EvalTable


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch, matplotlib) only when used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit.eval' has no attribute {name!r}")
