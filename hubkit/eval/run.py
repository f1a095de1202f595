"""The entry points of `hubkit eval` in one import: a pair, a trajectory, a cross-pair matrix."""

from __future__ import annotations

from pathlib import Path

from hubkit.eval.cross_pair_eval import evaluate_cross_pair
from hubkit.eval.generation import Generation
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.eval.report import base_record, checkpoint_record
from hubkit.eval.trajectory import evaluate_trajectory
from hubkit.pair import NLAPair


def load_pair(av_dir: str | Path, ar_dir: str | Path, **load) -> NLAPair:
    """The pair in two checkpoint folders (`load`: ``base_model``, ``device``, ``dtype``)."""
    return NLAPair.from_pretrained(av=av_dir, ar=ar_dir, **load)


__all__ = [
    "Generation",
    "base_record",
    "checkpoint_record",
    "evaluate_cross_pair",
    "evaluate_pair",
    "evaluate_trajectory",
    "load_pair",
]
