"""The entry points of `hubkit eval` in one import: a pair, a trajectory, a cross-pair matrix."""

from __future__ import annotations

from hubkit.eval.cross_pair_eval import evaluate_cross_pair
from hubkit.eval.generation import Generation
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.records import base_record, load_pair
from hubkit.eval.report import checkpoint_record
from hubkit.eval.trajectory import evaluate_trajectory

__all__ = [
    "Generation",
    "base_record",
    "checkpoint_record",
    "evaluate_cross_pair",
    "evaluate_pair",
    "evaluate_trajectory",
    "load_pair",
]
