"""The run folder: its layout, the context every stage reads (`Demo`), and its state file (``demo.json``)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubkit.demo.progress import Echo
from hubkit.demo.results import BaseModel, R
from hubkit.demo.settings import DEMO_ORG, STATE_FILE, STATE_SCHEMA, DemoError, DemoSettings


class Layout:
    """Where a run writes (see the package docstring)."""

    def __init__(self, out: Path) -> None:
        self.out, self.base, self.data, self.run = out, out / "base", out / "data", out / "run"
        self.evals, self.releases, self.dist = out / "eval", out / "releases", out / "dist"
        self.hub_root, self.hf_cache = out / "hub", out / "hf-cache"


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


@dataclass
class RunState:
    out: Path
    settings: DemoSettings
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {"seconds", "result"}

    @classmethod
    def open(cls, out: Path, settings: DemoSettings, keep: bool) -> RunState:
        """The state of the run in `out`: resumed (`keep`, same settings) or new (the folder emptied); a
        folder holding a run with other settings is refused, and so is a non-empty one that is not a run."""
        path = out / STATE_FILE
        if out.exists() and any(out.iterdir()) and not path.is_file():
            raise DemoError(f"{out}: exists and is not a demo folder (no {STATE_FILE}); choose another --out")
        if not keep and out.exists():
            shutil.rmtree(out)
        state = cls(out, settings)
        if path.is_file():
            old = json.loads(path.read_text())
            then = old.get("settings", {})
            now = settings.to_dict()  # a setting only one side has differs too
            diff = {k: (then.get(k), now.get(k)) for k in then.keys() | now.keys() if then.get(k) != now.get(k)}
            if old.get("schema") != STATE_SCHEMA:
                diff["schema"] = (old.get("schema"), STATE_SCHEMA)
            if diff:
                raise DemoError(
                    f"{out}: holds a demo run with other settings ({diff}, as (then, now)); pass --fresh "
                    "to replace it, or --out to run elsewhere"
                )
            state.stages = old.get("stages", {})
        out.mkdir(parents=True, exist_ok=True)
        state.save()
        return state

    def save(self) -> None:
        data = {"schema": STATE_SCHEMA, "settings": self.settings.to_dict(), "stages": self.stages}
        tmp = self.out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(self.out / STATE_FILE)

    def done(self, name: str, kind: type[R]) -> tuple[R, float] | None:
        rec = self.stages.get(name)
        if rec is None:
            return None
        return kind.from_dict(rec["result"]), float(rec["seconds"])

    def record(self, name: str, result: R, seconds: float) -> None:
        self.stages[name] = {"seconds": seconds, "result": asdict(result)}
        self.save()

    def seconds(self) -> dict[str, float]:
        return {k: float(v["seconds"]) for k, v in self.stages.items()}
