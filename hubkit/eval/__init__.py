"""Evaluation of NLAs: honest numbers that say whether an NLA reads its vectors at all.

`evaluate_pair` / `evaluate_trajectory` run everything and write ``eval.json`` (schema
``hubkit.eval/1``), ``rows.parquet`` and plots. The pieces are usable on their own: `metrics`
(cosine, normalised MSE, bootstrap, FVE, noise floor), `ablations` (content sensitivity of the AR),
`identification`, `diversity`, `trend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "evaluate_pair": "hubkit.eval.run",
    "evaluate_trajectory": "hubkit.eval.run",
    "EvalReport": "hubkit.eval.report",
    "read_eval": "hubkit.eval.report",
    "verify": "hubkit.eval.report",
    "EvalTable": "hubkit.eval.table",
    "content_sensitivity": "hubkit.eval.ablations",
}

__all__ = [
    "EvalReport",
    "EvalTable",
    "content_sensitivity",
    "evaluate_pair",
    "evaluate_trajectory",
    "read_eval",
    "verify",
]

if TYPE_CHECKING:
    from hubkit.eval.ablations import content_sensitivity
    from hubkit.eval.report import EvalReport, read_eval, verify
    from hubkit.eval.run import evaluate_pair, evaluate_trajectory
    from hubkit.eval.table import EvalTable


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch, matplotlib) only when used."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit.eval' has no attribute {name!r}")
