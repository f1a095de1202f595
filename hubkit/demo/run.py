"""`run_demo`: the twelve stages in order, each run once (or kept from an earlier run), and what they made."""

from __future__ import annotations

import functools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.data.corpus import load_corpus
from hubkit.demo.progress import Echo, default_threads, quiet_libraries, torch_threads
from hubkit.demo.results import (
    BaseModel,
    Built,
    Evaluated,
    Extracted,
    Grpo,
    Labeled,
    Pushed,
    R,
    Released,
    Reloaded,
    Splits,
    Trained,
    headline_figures,
)
from hubkit.demo.settings import STAGES, TAG, DemoError, DemoSettings, default_out, demo_settings
from hubkit.demo.state import Demo, Layout, RunState, repos
from hubkit.errors import HubkitError
from hubkit.precision import resolve_dtype_name


@dataclass
class DemoResult:
    """What a demo run made, where it lies, and the numbers it measured."""

    out_dir: Path
    settings: DemoSettings
    repos: dict[str, str]  # role (av, ar, trajectory, dataset) → repo id on the local Hub
    tag: str
    hub_root: Path
    bundles: dict[str, Path]  # release name → bundle folder
    cards: dict[str, Path]  # repo role → README.md in its bundle
    eval_json: Path
    trajectory_eval_json: Path
    plots: list[Path]
    checkpoints: dict[str, Path]  # av, ar: the released pair (local folders)
    figures: dict[str, Any]  # headline numbers (see `headline_figures`)
    sft_figures: dict[str, Any] | None  # the same for the SFT pair GRPO started from, on the same rows
    ar_only: dict[str, Any] | None  # the AR alone on the true labels (context labels), see `write_ar_only`
    reload: Reloaded  # the round trip through the Hub: explanations, cos, agreement with eval
    stage_seconds: dict[str, float]
    explanations_are: str  # what the explanations are, in one plain paragraph
    notes: list[str] = field(default_factory=list)


def run_stage(d: Demo, state: RunState, name: str, kind: type[R], fn: Callable[[], R]) -> R:
    """Run stage `name` once; a stage recorded in the state file is read back instead."""
    label = f"[{STAGES.index(name) + 1:2d}/{len(STAGES)}] {name:<9}"
    prior = state.done(name, kind)
    if prior is not None:
        d.echo(f"{label} done in an earlier run ({prior[1]:.1f} s), kept")
        return prior[0]
    t0 = time.perf_counter()
    try:
        result = fn()
    except HubkitError:
        raise
    except Exception as exc:
        raise DemoError(f"demo stage {name!r} failed: {type(exc).__name__}: {exc}") from exc
    seconds = time.perf_counter() - t0
    state.record(name, result, seconds)
    d.echo(f"{label} {seconds:6.1f} s  {result.line}".rstrip())
    return result


def run_stages(d: Demo, state: RunState) -> DemoResult:
    # lazy: the stages load torch and the libraries; the CLI imports `run_demo` at startup
    from hubkit.demo import data_stages, evaluation, publish, training

    stage = functools.partial(run_stage, d, state)
    base = stage("base", BaseModel, lambda: data_stages.stage_base(d))
    extracted = stage("extract", Extracted, lambda: data_stages.stage_extract(d, base))
    splits = stage("split", Splits, lambda: data_stages.stage_split(d, extracted))
    labeled = stage("label", Labeled, lambda: data_stages.stage_label(d, base, splits))
    built = stage("build", Built, lambda: data_stages.stage_build(d, splits, labeled))
    ar = stage("train_ar", Trained, lambda: training.stage_train_sft(d, base, built, "ar"))
    av = stage("train_av", Trained, lambda: training.stage_train_sft(d, base, built, "av"))
    grpo = stage("grpo", Grpo, lambda: training.stage_grpo(d, base, built, av, ar))
    evaluated = stage("eval", Evaluated, lambda: evaluation.stage_eval(d, built, grpo, ar, av))
    released = stage("release", Released, lambda: publish.stage_release(d, base, built, grpo, ar, evaluated))
    stage("push", Pushed, lambda: publish.stage_push(d, base, released))
    reloaded = stage("reload", Reloaded, lambda: publish.stage_reload(d, base, built, evaluated))
    bundles = {k: Path(v) for k, v in released.bundles.items()}
    bundle_of = dict(av=publish.PAIR, ar=publish.PAIR, trajectory=publish.TRAJECTORY, dataset=publish.DATASET)
    cards = {role: bundles[name] / role / "README.md" for role, name in bundle_of.items()}
    evals = d.layout.evals
    plots = [p for sub in ("pair", "trajectory") for p in sorted((evals / sub / "plots").glob("*.png"))]
    return DemoResult(
        out_dir=d.layout.out,
        settings=d.settings,
        repos=repos(d.settings, base),
        tag=TAG,
        hub_root=d.layout.hub_root,
        bundles=bundles,
        cards=cards,
        eval_json=Path(evaluated.pair),
        trajectory_eval_json=Path(evaluated.trajectory),
        plots=plots,
        checkpoints={"av": Path(grpo.checkpoint), "ar": Path(grpo.ar_checkpoint or ar.checkpoint)},
        figures=headline_figures(json.loads(Path(evaluated.pair).read_text())),
        sft_figures=(
            headline_figures(json.loads(Path(evaluated.sft_pair).read_text())) if evaluated.sft_pair else None
        ),
        ar_only=json.loads(Path(evaluated.ar_only).read_text()) if evaluated.ar_only else None,
        reload=reloaded,
        stage_seconds=state.seconds(),
        explanations_are=publish.what_the_explanations_are(d),
        notes=[grpo.note] if grpo.note else [],
    )


def run_demo(
    out_dir: str | Path | None = None,
    *,
    keep: bool = True,
    threads: int | None = None,
    progress: bool = True,
    echo: Echo | None = None,
    **sizes: Any,
) -> DemoResult:
    """Run the whole journey (see `hubkit.demo`) and return where everything is and what it measured.

    `sizes` are `demo_settings`' arguments. `keep` resumes a run with the same settings in `out_dir`;
    `keep=False` starts from an empty folder. `threads` is torch's CPU thread count (default:
    `default_threads`); it changes speed, not results beyond float rounding, so a kept run need not match it.
    """
    settings = demo_settings(**sizes)
    settings.check_corpus(len(load_corpus("bundled")))
    if threads is not None and threads < 1:
        raise DemoError(f"demo: --threads must be >= 1, got {threads}")
    out = Path(out_dir).expanduser() if out_dir is not None else default_out()
    d = Demo(Layout(out), settings, echo or (lambda m: print(m, flush=True)), progress)
    state = RunState.open(out, settings, keep)
    n_threads = threads if threads is not None else default_threads(settings.quick)
    d.echo(
        f"hubkit demo: {settings.model}, {settings.rows} labeled rows ({settings.labeler} labels), "
        f"{settings.eval_rows} held-out rows, {settings.ar_steps} AR + {settings.steps} AV SFT steps, "
        f"{settings.grpo_steps} GRPO steps, dtype {resolve_dtype_name(settings.dtype, 'cpu')}, "
        f"{n_threads} CPU thread(s) → {out}"
    )
    with quiet_libraries(), torch_threads(n_threads), warnings.catch_warnings():
        # transformers deprecation chatter (e.g. `is_gradient_checkpointing`, hit by attribute scans)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        return run_stages(d, state)
