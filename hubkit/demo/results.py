"""What each demo stage returns: one typed result per stage, taken by the stages after it and kept in the
state file between runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R", bound="StageResult")


@dataclass(frozen=True)
class StageResult:
    """A stage's result and the line printed after it (its `asdict` is kept in the state file)."""

    @property
    def line(self) -> str:  # pragma: no cover - every stage overrides it
        return ""

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class BaseModel(StageResult):
    base: str  # registry name, or the folder of the tiny random model
    layer: int
    n_layers: int
    card_base: str | None  # Hub id the cards name as base_model (the tiny model's, pushed by the demo)
    description: str

    @property
    def line(self) -> str:
        return self.description


@dataclass(frozen=True)
class Extracted(StageResult):
    path: str
    rows: int
    docs: int
    layer: int

    @property
    def line(self) -> str:
        return f"{self.rows} vectors from {self.docs} documents at layer {self.layer}"


@dataclass(frozen=True)
class Splits(StageResult):
    folder: str
    rows: dict[str, int]

    @property
    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.rows.items()) + " rows"


@dataclass(frozen=True)
class Labeled(StageResult):
    folder: str
    labeler: str
    status_counts: dict[str, int]

    @property
    def line(self) -> str:
        return f"{sum(self.status_counts.values())} rows labeled by {self.labeler} ({self.status_counts})"


@dataclass(frozen=True)
class Built(StageResult):
    tables: dict[str, str]
    rows: dict[str, int]

    def table(self, name: str) -> Path:
        return Path(self.tables[name])

    @property
    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.rows.items()) + " rows"


@dataclass(frozen=True)
class Trained(StageResult):
    checkpoint: str
    run_dir: str
    dtype: str
    first_loss: float | None = None
    last_loss: float | None = None
    steps_logged: int = 0

    @property
    def line(self) -> str:
        name = Path(self.checkpoint).name
        if self.first_loss is None or self.last_loss is None:
            return f"{name} ({self.dtype})"
        return (
            f"{name}; loss {self.first_loss:.4g} → {self.last_loss:.4g} over {self.steps_logged} steps "
            f"({self.dtype})"
        )


@dataclass(frozen=True)
class Grpo(StageResult):
    checkpoint: str  # the RL AV
    collapsed: bool
    note: str | None = None
    reward: float | None = None
    parsed: float | None = None
    ar_checkpoint: str | None = None  # the AR trained alongside it (the SFT AR when it stayed frozen)
    steps: int | None = None

    @property
    def line(self) -> str:
        if self.note:
            return self.note
        if self.reward is None:
            return Path(self.checkpoint).name
        return f"{Path(self.checkpoint).name}; last step: reward {self.reward:.4f}, parsed {self.parsed:.0%}"


@dataclass(frozen=True)
class Evaluated(StageResult):
    pair: str  # eval.json of the released pair (the RL AV and its co-trained AR, the frozen SFT AR beside)
    trajectory: str  # eval.json over the GRPO checkpoints (each with its own AR and the frozen SFT AR)
    ar_only: str | None  # eval.json of the AR alone on the true labels (context labels only)
    summary: str
    sft_pair: str | None = None  # eval.json of the SFT pair on the same rows (RL's starting point)

    @property
    def line(self) -> str:
        return self.summary


@dataclass(frozen=True)
class Released(StageResult):
    specs: dict[str, str]  # release name → spec YAML the demo wrote
    bundles: dict[str, str]  # release name → bundle folder
    dist: str

    @property
    def line(self) -> str:
        return f"{len(self.bundles)} bundles in {self.dist}"


@dataclass(frozen=True)
class Pushed(StageResult):
    commits: dict[str, str]  # repo id → commit
    tag: str
    hub_root: str

    @property
    def line(self) -> str:
        return f"{len(self.commits)} repos tagged {self.tag} on the local Hub ({self.hub_root})"


@dataclass(frozen=True)
class Reloaded(StageResult):
    """The pair loaded back by repo id and tag, round-tripping the first eval rows."""

    repos: str
    tag: str
    rows: list[int] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    cos: list[float] = field(default_factory=list)
    mean_cos: float = 0.0
    same_explanations: int = 0
    max_abs_cos_diff_vs_eval: float = 0.0

    @property
    def line(self) -> str:
        k = len(self.cos)
        return (
            f"{self.repos} @ {self.tag}: mean cos {self.mean_cos:.3f} on {k} rows; {self.same_explanations}/{k} "
            f"explanations and cosines (max |Δ| {self.max_abs_cos_diff_vs_eval:.1e}) as in the eval"
        )


def headline_figures(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers the summary quotes, read from a pair eval.json (nothing recomputed)."""
    f = ev["figures"]
    rt = f["round_trip"]["all"]
    empty = next(c for c in f["content_sensitivity"]["av"]["controls"] if c["name"] == "empty")
    t1 = next(t for t in f["identification"]["top"] if t["k"] == 1)
    fixed = f.get("fixed_ar")
    return {
        "layer": ev["nla"]["layer"],
        "n": rt["n"],
        "cos_mean": rt["cos"]["mean"],
        "cos_ci": [rt["cos"]["ci_low"], rt["cos"]["ci_high"]],
        "fve": (rt.get("fve") or {}).get("value"),
        "floor_mean": f["noise_floor"]["mean"],
        "floor_p95": f["noise_floor"]["p95"],
        "frac_above_floor": f["noise_floor"]["frac_above"],
        "empty_delta": empty["delta"]["mean"],
        "empty_delta_ci": [empty["delta"]["ci_low"], empty["delta"]["ci_high"]],
        "empty_cos": empty["cos"]["mean"],
        "ar_content": f["content_sensitivity"]["av"]["verdict"],
        "top1": t1["accuracy"],
        "top1_hits": t1["hits"],
        "top1_chance": t1["chance"],
        "top1_p": t1["p_value"],
        "reads_vectors": ev["verdicts"]["reads_vectors"],
        "n_excluded": f["round_trip"]["n_excluded"],
        "distinct": f["diversity"]["distinct"],
        "fixed_ar": fixed_figures(fixed) if fixed else None,
    }


def fixed_figures(fa: dict[str, Any]) -> dict[str, Any]:
    """The frozen SFT AR's headline figures in a pair eval.json (`figures.fixed_ar`)."""
    t1 = next(t for t in fa["identification"]["top"] if t["k"] == 1)
    empty = next(c for c in fa["content_sensitivity"]["controls"] if c["name"] == "empty")
    return {
        "ar": fa["ar"],
        "cos_mean": fa["round_trip"]["cos"]["mean"],
        "fve": fa["round_trip"]["fve"]["value"],
        "top1": t1["accuracy"],
        "top1_hits": t1["hits"],
        "empty_delta": empty["delta"]["mean"],
    }
