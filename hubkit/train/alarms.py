"""What GRPO watches every step, and when it stops a run that RL is taking somewhere wrong.

A policy can raise the AR's reward in ways that make the NLA worse: longer explanations, outputs that stop
parsing, groups whose samples are all alike, or text the frozen SFT AR (the fixed yardstick) reads less of
the vector from. Each alarm compares the mean of the last `window` steps with a threshold or with the
mean of the first `window` steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from hubkit.errors import HubkitError
from hubkit.train.recipe import GRPOAlarms

WATCHED = ("length", "succeeded", "distinct_per_group", "frozen_real_minus_empty")
"""The step statistics the alarms read (`grpo.step_stats` plus the frozen-AR control)."""


class AlarmTripped(HubkitError, RuntimeError):
    """A GRPO alarm crossed its threshold: the run stopped at its last good checkpoint."""


def tripped(cfg: GRPOAlarms, history: Mapping[str, Sequence[float]]) -> list[str]:
    """The alarms `history` (per-step values of `WATCHED`, oldest first) sets off, one sentence each."""
    w = cfg.window
    found: list[str] = []

    def means(name: str) -> tuple[float | None, float | None]:
        """(mean of the first window once it does not overlap the last, mean of the last window)."""
        xs = [x for x in history.get(name, ()) if x == x]  # NaN: nothing measured that step
        first = fmean(xs[:w]) if len(xs) >= 2 * w else None
        return first, fmean(xs[-w:]) if len(xs) >= w else None

    start, now = means("length")
    if cfg.length_drift is not None and start is not None and start > 0 and now > cfg.length_drift * start:
        found.append(
            f"length drift: rollouts average {now:.1f} tokens over the last {w} steps against {start:.1f} "
            f"at the start (> {cfg.length_drift:g}×, grpo.alarms.length_drift)"
        )
    _, now = means("succeeded")
    if cfg.min_parsed is not None and now is not None and now < cfg.min_parsed:
        found.append(
            f"parse rate: {now:.2f} of the rollouts over the last {w} steps parsed and stopped in time "
            f"(< {cfg.min_parsed:g}, grpo.alarms.min_parsed)"
        )
    _, now = means("distinct_per_group")
    if cfg.min_distinct is not None and now is not None and now < cfg.min_distinct:
        found.append(
            f"diversity: {now:.2f} distinct outputs per group over the last {w} steps "
            f"(< {cfg.min_distinct:g}, grpo.alarms.min_distinct)"
        )
    start, now = means("frozen_real_minus_empty")
    if cfg.reading_drop is not None and start is not None and start - now > cfg.reading_drop:
        found.append(
            f"the frozen SFT AR reads less of the vector from the rollouts: real − empty cosine "
            f"{now:+.3f} over the last {w} steps against {start:+.3f} at the start (a drop over "
            f"{cfg.reading_drop:g}, grpo.alarms.reading_drop)"
        )
    return found


@dataclass
class AlarmWatch:
    """The per-step history of the watched figures (restored on resume) and the check after each step."""

    cfg: GRPOAlarms
    history: dict[str, list[float]] = field(default_factory=dict)

    def add(self, stats: Mapping[str, float]) -> None:
        for name in WATCHED:
            value = stats.get(name)
            self.history.setdefault(name, []).append(float("nan") if value is None else float(value))

    def check(self, step: int, last_good: str) -> None:
        """Raise `AlarmTripped` naming every tripped alarm and the last good checkpoint."""
        found = tripped(self.cfg, self.history)
        if found:
            raise AlarmTripped(
                f"GRPO stopped at step {step}: " + "; ".join(found) + f". Last good checkpoint: {last_good}. "
                "Lower optim.lr, raise grpo.kl_coef or grpo.length_penalty, or relax the alarm in the recipe"
            )

    def state(self) -> dict[str, list[float | None]]:
        """The history as JSON keeps it: a step without a value is null, never NaN."""
        return {k: [None if x != x else x for x in v] for k, v in self.history.items()}

    def restore(self, saved: Mapping[str, Sequence[float | None]]) -> None:
        self.history = {k: [float("nan") if x is None else float(x) for x in v] for k, v in saved.items()}
