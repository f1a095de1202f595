"""One demo run's context: its folder layout, its settings, and where it reports progress."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hubkit.demo.progress import Echo
from hubkit.demo.results import BaseModel
from hubkit.demo.settings import DEMO_ORG, DemoSettings


@dataclass(frozen=True)
class Layout:
    """Where a run writes (see the package docstring)."""

    out: Path

    @property
    def base(self) -> Path:
        return self.out / "base"

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def evals(self) -> Path:
        return self.out / "eval"

    @property
    def releases(self) -> Path:
        return self.out / "releases"

    @property
    def dist(self) -> Path:
        return self.out / "dist"

    @property
    def hub_root(self) -> Path:
        return self.out / "hub"

    @property
    def hf_cache(self) -> Path:
        return self.out / "hf-cache"


@dataclass(frozen=True)
class Demo:
    """What every stage reads: the layout, the settings, and the progress outputs."""

    layout: Layout
    settings: DemoSettings
    echo: Echo
    progress: bool


def repos(settings: DemoSettings, base: BaseModel) -> dict[str, str]:
    """Role (av, ar, trajectory, dataset) → the repo id the demo publishes it to."""
    slug = f"{DEMO_ORG}/{settings.model}-L{base.layer}-nla"
    return {
        "av": f"{slug}-av",
        "ar": f"{slug}-ar",
        "trajectory": f"{slug}-av-trajectory",
        "dataset": f"{slug}-data",
    }
