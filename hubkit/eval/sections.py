"""eval.json's figures and verdicts as typed dataclasses (written by `metrics.to_plain`, read back by
`report.read_eval`), and the figure paths derived from them: `figure_paths` lists every figure as a dotted
path (``*`` over list items) marking the optional ones; `required_paths` is what a card may rely on.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from hubkit.eval.ablations import ContentSensitivity
from hubkit.eval.claims import ClaimAblation
from hubkit.eval.cross_pair import CrossPair
from hubkit.eval.diversity import Diversity
from hubkit.eval.identification import Identification
from hubkit.eval.judge import JudgedClaims
from hubkit.eval.metrics import FVE, NoiseFloor, Plain, Summary
from hubkit.eval.paraphrase import ParaphraseSensitivity
from hubkit.eval.spliced import SplicedLoss
from hubkit.eval.trend import Trend

OPTIONAL_SECTIONS = ("paraphrase", "claim_ablation", "cross_pair", "fixed_ar", "spliced_loss", "judge")


class _Section(Plain):
    def __getitem__(self, name: str) -> Any:
        """A field by its eval.json key (``verdicts["reads_vectors"]``), for code written against the
        JSON layout; new code uses attributes. Unknown keys raise `KeyError`."""
        if name not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(f"{type(self).__name__} has no field {name!r}")
        return getattr(self, name)


@dataclass
class RoundTripBlock(_Section):
    n: int
    cos: Summary
    nmse: Summary
    fve: FVE | None


@dataclass
class RoundTripAll(RoundTripBlock):
    """Every row: at least the eval's minimum, so FVE always has a value."""

    fve: FVE


@dataclass
class FloorShare(_Section):
    all: float
    valid_only: float | None


@dataclass
class RoundTrip(_Section):
    statuses: dict[str, int]
    n_excluded: int
    excluded_means: str
    all: RoundTripAll
    valid_only: RoundTripBlock
    frac_above_floor: FloorShare


@dataclass
class FixedAR(_Section):
    """The round trip's own explanations read by a fixed yardstick, the frozen SFT AR (`hubkit.eval.yardstick`
    says why)."""

    ar: str  # the frozen AR's folder or repo id
    # whether the pair's own AR was trained in RL (then this is the honest figure)
    evaluated_ar_co_trained: bool
    round_trip: RoundTripAll
    identification: Identification
    content_sensitivity: ContentSensitivity


@dataclass
class ContentSensitivities(_Section):
    av: ContentSensitivity  # the AV's explanations (the round trip)
    reference: ContentSensitivity | None  # the eval table's own explanations, when it has them


@dataclass
class PairFigures(_Section):
    omit_none = OPTIONAL_SECTIONS  # not run: left out of eval.json
    round_trip: RoundTrip
    noise_floor: NoiseFloor
    content_sensitivity: ContentSensitivities
    identification: Identification
    diversity: Diversity
    paraphrase: ParaphraseSensitivity | None = None
    claim_ablation: ClaimAblation | None = None
    cross_pair: CrossPair | None = None
    fixed_ar: FixedAR | None = None
    spliced_loss: SplicedLoss | None = None
    judge: JudgedClaims | None = None


@dataclass
class Verdicts(_Section):
    reads_vectors: bool
    identification: str  # "above_chance" | "at_chance"
    identification_alpha: float
    ar_content: str
    input_independent_share: float | None
    note: str


@dataclass
class FolderHashes(_Section):
    """A checkpoint folder and the sha256 of each of its files (relative paths)."""

    path: str
    files: dict[str, str]


@dataclass
class PointIdentification(_Section):
    top1: float
    top5: float
    chance_top1: float
    chance_top5: float


@dataclass
class PointFixedAR(_Section):
    """A trajectory checkpoint's headline figures under the frozen SFT AR (see `FixedAR`)."""

    cos: Summary
    fve: FVE
    top1: float
    real_minus_empty: float


@dataclass
class SplicedPoint(_Section):
    """A checkpoint's spliced-loss headline (when the trajectory eval measured it)."""

    frac_recovered: float | None
    ci_low: float | None
    ci_high: float | None
    kl_reconstruction: float | None


@dataclass
class TrajectoryPoint(_Section):
    """One checkpoint's headline figures in a trajectory summary."""

    omit_none = ("fixed_ar", "spliced_loss")

    name: str
    step: int | None
    loss: float | None
    av: FolderHashes
    ar: FolderHashes
    eval_json: dict | None  # {path, sha256} of the checkpoint's own eval.json
    cos: Summary
    fve: FVE | None
    cos_valid_only: Summary
    n_excluded: int
    noise_floor_p95: float
    frac_above_floor: float
    identification: PointIdentification
    ar_content: str
    reads_vectors: bool
    distinct_frac: float
    fixed_ar: PointFixedAR | None = None  # the same explanations read by the frozen SFT AR
    spliced_loss: SplicedPoint | None = None


@dataclass
class LossCurve(_Section):
    source: str
    n_points: int
    steps: list[float]
    losses: list[float]
    sha256: str | None = None


@dataclass
class Trajectory(_Section):
    checkpoints: list[TrajectoryPoint]
    loss_curve: LossCurve
    trend: Trend | None
    trend_note: str | None


@dataclass
class TrajectoryFigures(_Section):
    trajectory: Trajectory


@dataclass
class TrajectoryVerdicts(_Section):
    trend: str | None
    reads_vectors_last: bool


@dataclass
class CrossPairFigures(_Section):
    cross_pair: CrossPair


@dataclass
class NoVerdicts(_Section):
    """A cross-pair eval gives no verdict of its own (each cell's figures speak)."""

    notes: list[str] = field(default_factory=list)


# -- figure paths ------------------------------------------------------------------------------------
def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(type without ``None``, whether ``None`` was allowed)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), len(args) < len(typing.get_args(tp))
    return tp, False


def figure_paths(cls: type, prefix: str = "figures", optional: bool = False) -> list[tuple[str, bool]]:
    """Every leaf figure of `cls` as ``(dotted path, optional)``; ``*`` stands for each item of a list.
    Optional: under a section or object that may be absent or ``None`` (an unrun section, the reference
    controls); a leaf typed ``float | None`` is not: its key is always written (``null`` when there were
    too few rows, which release checks refuse)."""
    out: list[tuple[str, bool]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.repr:
            continue
        tp, maybe_none = _unwrap(hints[f.name])
        path = f"{prefix}.{f.name}"
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            tp, path = typing.get_args(tp)[0], f"{path}.*"
        if dataclasses.is_dataclass(tp):
            out += figure_paths(tp, path, optional or maybe_none)
        else:
            out.append((path, optional))
    return out


def required_paths(cls: type, prefix: str = "figures") -> tuple[str, ...]:
    """The figures of `cls` that are never ``None`` nor left out: what a card can always print."""
    return tuple(p for p, optional in figure_paths(cls, prefix) if not optional)
