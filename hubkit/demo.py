"""`hubkit demo`: the whole NLA journey, offline, in one call.

extract → split → label → build → train AR → train AV → GRPO → eval (pair + trajectory) → release
(pair, trajectory, dataset) → push to a local Hub → load the pair back by repo id and tag.

Every stage calls the library function a user would call (nothing shells out), and writes under one
folder (default ``$HUBKIT_CACHE/demo``)::

    OUT/demo.json        settings, stage times, results (what `--keep` resumes from)
    OUT/base/            the tiny random base (`--quick` only)
    OUT/data/            activations, splits, labeled and built tables (+ sidecars)
    OUT/run/             recipe.yaml; av/, ar/, grpo/ trajectories (step_* checkpoints)
    OUT/eval/pair/       eval.json, rows.parquet, plots/ of the released pair
    OUT/eval/trajectory/ eval.json and plots/ over the AV SFT checkpoints
    OUT/releases/        the three release specs the demo wrote
    OUT/dist/            the three bundles (model and dataset cards: README.md in each repo folder)
    OUT/hub/             the local Hub's storage (repos persist between runs)
    OUT/hf-cache/        huggingface_hub's download cache for the reload

With `keep` (the default) a run picks up where an earlier one with the same settings stopped; a
folder holding a run with other settings is refused (use `fresh`, or another folder). Labels a real
model writes go to the shared label cache (``$HUBKIT_CACHE/labels.sqlite``), so a fresh run with the
same model and documents does not label them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubkit.errors import HubkitError

log = logging.getLogger(__name__)

STATE_FILE = "demo.json"
STATE_SCHEMA = "hubkit.demo/1"
DEMO_ORG = "hubkit-demo"
TAG = "v0.1"
TOKEN = "hf_demo_local"  # the local Hub wants a token on writes; any string does
QUICK_MODEL = "tiny-llama"
POSITIONS_PER_DOC = 2
STAGES = (
    "base",
    "extract",
    "split",
    "label",
    "build",
    "train_ar",
    "train_av",
    "grpo",
    "eval",
    "release",
    "push",
    "reload",
)


class DemoError(HubkitError, RuntimeError):
    """The demo cannot run as asked (a folder from another run, bad sizes, a stage that failed)."""


# ---------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run. `rows` counts labeled training rows (AV SFT + AR SFT together)."""

    model: str
    rows: int
    eval_rows: int
    rl_rows: int
    steps: int
    grpo_steps: int
    seed: int
    quick: bool
    label_tokens: int  # labeler/auditor answer length
    eval_tokens: int  # AV explanation length at eval and reload
    grpo_tokens: int
    group_size: int
    n_boot: int
    dtype: str  # training dtype

    def __post_init__(self) -> None:
        for name in ("rows", "eval_rows", "rl_rows", "steps", "grpo_steps"):
            if getattr(self, name) < 1:
                raise DemoError(f"demo: `{name}` must be >= 1, got {getattr(self, name)}")
        if self.rows < 4 * POSITIONS_PER_DOC:
            raise DemoError(f"demo: --rows must be at least {4 * POSITIONS_PER_DOC} (two documents per half)")
        if self.eval_rows < 10:
            raise DemoError("demo: the eval needs at least 10 held-out rows (bootstrap, noise floor, top-5)")

    def check_corpus(self, n_docs: int) -> None:
        need = sum(self.docs.values())
        if need > n_docs:
            raise DemoError(
                f"demo: these sizes need {need} documents ({POSITIONS_PER_DOC} rows each) but the bundled corpus "
                f"has {n_docs}; lower --rows or --eval-rows"
            )

    @property
    def docs(self) -> dict[str, int]:
        """Documents per split: `rows` shared by the two SFT halves, POSITIONS_PER_DOC rows per document."""
        half = math.ceil(self.rows / 2 / POSITIONS_PER_DOC)
        return {
            "av_sft": half,
            "ar_sft": half,
            "rl": math.ceil(self.rl_rows / POSITIONS_PER_DOC),
            "eval": math.ceil(self.eval_rows / POSITIONS_PER_DOC),
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def demo_settings(
    model: str | None = None,
    rows: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    eval_rows: int | None = None,
    grpo_steps: int | None = None,
) -> DemoSettings:
    """Settings for a run: the quick defaults (a tiny random model, seconds) or the full ones (SmolLM2-135M:
    about 7 minutes on an idle 2-core CPU, model conversion and labeling included)."""

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    if quick:
        if model not in (None, QUICK_MODEL):
            raise DemoError(f"--quick runs on a tiny random model; drop --model {model!r} or --quick")
        return DemoSettings(
            model=QUICK_MODEL,
            rows=pick(rows, 16),
            eval_rows=pick(eval_rows, 12),
            rl_rows=4,
            steps=pick(steps, 4),
            grpo_steps=pick(grpo_steps, 1),
            seed=seed,
            quick=True,
            label_tokens=10,
            eval_tokens=8,
            grpo_tokens=6,
            group_size=2,
            n_boot=200,
            dtype="float32",
        )
    steps = pick(steps, 40)
    return DemoSettings(
        model=_registry_name(model or _default_model()),
        rows=pick(rows, 48),
        eval_rows=pick(eval_rows, 32),
        rl_rows=16,
        steps=steps,
        grpo_steps=pick(grpo_steps, max(2, steps // 15)),
        seed=seed,
        quick=False,
        label_tokens=40,
        eval_tokens=40,
        grpo_tokens=32,
        group_size=4,
        n_boot=1000,
        dtype="bfloat16",
    )


def _registry_name(model: str) -> str:
    """The offline registry name for `model` (a name or the Hub id it stands in for); others are refused."""
    from hubkit import models

    return models.get_spec(model).name


def _default_model() -> str:
    from hubkit import models

    return models.DEFAULT_MODEL


def default_out() -> Path:
    """``$HUBKIT_CACHE/demo`` (default ``~/.cache/hubkit/demo``)."""
    from hubkit import models

    return models.cache_dir() / "demo"


# ---------------------------------------------------------------------------------------------- result


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
    reload: dict[str, Any]  # the round trip through the Hub: explanations, cos, agreement with eval
    stage_seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.stage_seconds.values()))


# ---------------------------------------------------------------------------------------------- progress


Echo = Callable[[str], None]


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, disable=not enabled, file=sys.stderr)


@contextlib.contextmanager
def _watch_metrics(run_dir: Path, total: int, desc: str, enabled: bool) -> Iterator[None]:
    """A tqdm bar over a training stage, fed by the lines its runner appends to metrics.jsonl."""
    if not enabled:
        yield
        return
    bar = _bar(total, desc, enabled)
    stop = threading.Event()
    path = run_dir / "metrics.jsonl"

    def poll() -> None:
        while not stop.wait(0.5):
            try:
                last = json.loads(path.read_text().splitlines()[-1])
            except (OSError, IndexError, ValueError):  # not there yet, or a line being written
                continue
            bar.n = min(total, int(last.get("step", bar.n)))
            loss = last.get("loss")
            if isinstance(loss, (int, float)):
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            bar.refresh()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


class _CountingLabeler:
    """A labeler that asks its backend in small slices, so a progress bar moves between batches.

    `scrub` characters are removed from the replies: the tiny random model of `--quick` writes byte
    soup that can hold the AV's marker character, which AV training rightly refuses.
    """

    def __init__(self, inner, bar, slice_size: int, scrub: str = "") -> None:
        self.inner, self.bar, self.slice_size, self.scrub = inner, bar, slice_size, scrub
        self.name = inner.name  # the label cache and provenance see the real backend's name

    def chat(self, conversations):
        replies: list[str] = []
        for start in range(0, len(conversations), self.slice_size):
            part = conversations[start : start + self.slice_size]
            replies += self.inner.chat(part)
            self.bar.update(len(part))
        for ch in self.scrub:
            replies = [r.replace(ch, "") for r in replies]
        return replies


# ---------------------------------------------------------------------------------------------- the run


class _Demo:
    """One run: paths, the state file, and one method per stage."""

    def __init__(self, out: Path, settings: DemoSettings, echo: Echo, progress: bool) -> None:
        self.out, self.s, self.echo, self.progress = out, settings, echo, progress
        self.data = out / "data"
        self.run = out / "run"
        self.evals = out / "eval"
        self.hub_root = out / "hub"
        self.state: dict[str, Any] = {"schema": STATE_SCHEMA, "settings": settings.to_dict(), "stages": {}}
        self.notes: list[str] = []
        # set by the base stage (`_set_base`)
        self.base, self.layer, self.card_base = "", -1, None
        self.repos: dict[str, str] = {}

    # -- state ---------------------------------------------------------------------------------
    def load_state(self, keep: bool) -> None:
        path = self.out / STATE_FILE
        if not keep and self.out.exists():
            if any(self.out.iterdir()) and not path.is_file():
                raise DemoError(
                    f"{self.out}: exists and is not a demo folder (no {STATE_FILE}); choose another --out"
                )
            shutil.rmtree(self.out)
        if self.out.exists() and any(self.out.iterdir()):
            if not path.is_file():
                raise DemoError(
                    f"{self.out}: exists and is not a demo folder (no {STATE_FILE}); choose another --out"
                )
            old = json.loads(path.read_text())
            if old.get("settings") != self.s.to_dict():
                diff = {
                    k: (old.get("settings", {}).get(k), v)
                    for k, v in self.s.to_dict().items()
                    if old.get("settings", {}).get(k) != v
                }
                raise DemoError(
                    f"{self.out}: holds a demo run with other settings ({diff}, as (then, now)); pass --fresh "
                    "to replace it, or --out to run elsewhere"
                )
            self.state = old
        self.out.mkdir(parents=True, exist_ok=True)
        self.save_state()

    def save_state(self) -> None:
        tmp = self.out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True, default=str) + "\n")
        tmp.replace(self.out / STATE_FILE)

    def stage(self, index: int, name: str, fn: Callable[[], dict | None]) -> dict:
        """Run one stage (or reuse its recorded result), print its line with the time it took."""
        label = f"[{index:2d}/{len(STAGES)}] {name:<9}"
        prior = self.state["stages"].get(name)
        if prior is not None:
            self.echo(f"{label} done in an earlier run ({prior['seconds']:.1f} s), kept")
            return prior
        t0 = time.perf_counter()
        try:
            result = fn() or {}
        except HubkitError:
            raise
        except Exception as exc:
            raise DemoError(f"demo stage {name!r} failed: {type(exc).__name__}: {exc}") from exc
        result["seconds"] = time.perf_counter() - t0
        self.state["stages"][name] = result
        self.save_state()
        self.echo(f"{label} {result['seconds']:6.1f} s  {result.get('line', '')}".rstrip())
        return result

    # -- base ----------------------------------------------------------------------------------
    def stage_base(self) -> dict:
        from hubkit import models
        from hubkit.data.extract import default_layer

        if self.s.quick:
            import torch

            from hubkit.testing import make_tiny_model

            tiny = make_tiny_model("llama", d_model=64, n_layers=3, seed=self.s.seed)
            with torch.no_grad():  # sharper logits, so a few LoRA steps move the loss (as in the unit tests)
                tiny.model.lm_head.weight.mul_(10.0)
            path = tiny.save(self.out / "base")
            n_layers = tiny.model.config.num_hidden_layers
            return {
                "base": str(path),
                "layer": default_layer(n_layers),
                "n_layers": n_layers,
                "card_base": f"{DEMO_ORG}/{QUICK_MODEL}-random",
                "line": f"tiny random Llama (d=64, {n_layers} blocks) at {path}",
            }
        spec = models.get_spec(self.s.model)
        path = models.prepare(spec.name, progress=self.echo)
        return {
            "base": spec.name,
            "layer": spec.nla_layer,
            "n_layers": spec.n_layers,
            "card_base": None,
            "line": f"{spec.hf_repo} ({spec.quantization} GGUF → bf16) at {path}; "
            f"layer {spec.nla_layer} of {spec.n_layers}",
        }

    def _set_base(self, rec: dict) -> None:
        self.base, self.layer, self.card_base = rec["base"], rec["layer"], rec["card_base"]
        slug = f"{DEMO_ORG}/{self.s.model}-L{self.layer}-nla"
        self.repos = {
            "av": f"{slug}-av",
            "ar": f"{slug}-ar",
            "trajectory": f"{slug}-av-trajectory",
            "dataset": f"{slug}-data",
        }

    def _base_model_and_tokenizer(self, dtype):
        from hubkit import models

        return models.load(self.base, dtype=dtype)

    # -- data ----------------------------------------------------------------------------------
    def corpus(self):
        """A seeded sample of the bundled corpus, spread over its topics, in file order."""
        from hubkit.data.corpus import Corpus, load_corpus

        full = load_corpus("bundled")
        self.s.check_corpus(len(full))
        need = sum(self.s.docs.values())

        def rank(doc) -> str:
            return hashlib.sha256(f"{self.s.seed}\0{doc.doc_id}".encode()).hexdigest()

        chosen = {d.doc_id for d in sorted(full.documents, key=rank)[:need]}
        docs = tuple(d for d in full.documents if d.doc_id in chosen)
        return Corpus(f"bundled[sample {need}, seed {self.s.seed}]", docs)

    def stage_extract(self) -> dict:
        import torch

        from hubkit.data.extract import ExtractConfig, extract
        from hubkit.data.sidecar import read_sidecar
        from hubkit.train.adapters import meta_base_name

        corpus = self.corpus()
        model, tok = self._base_model_and_tokenizer(torch.float32)
        config = ExtractConfig(
            layer=self.layer,
            positions_per_doc=POSITIONS_PER_DOC,
            min_position=8,
            max_length=128,
            seed=self.s.seed,
        )
        bar = _bar(len(corpus), "extract (documents)", self.progress)

        def on_batch(chunk: int, done: int) -> None:
            bar.n = min(len(corpus), chunk * config.docs_per_chunk + done)
            bar.refresh()

        path = extract(
            corpus,
            model,
            tok,
            self.data / "activations.parquet",
            config,
            base_model=meta_base_name(self.base),
            on_batch=on_batch,
        )
        bar.close()
        rows = read_sidecar(path).rows
        return {
            "path": str(path),
            "rows": rows,
            "line": f"{rows} vectors from {len(corpus)} documents at layer {self.layer}",
        }

    def stage_split(self) -> dict:
        from hubkit.data.sidecar import read_sidecar
        from hubkit.data.split import split_table

        docs = self.s.docs
        total = sum(docs.values())
        fractions = {k: v / total for k, v in docs.items()}
        paths = split_table(self.data / "activations.parquet", self.data / "splits", fractions, self.s.seed)
        counts = {k: read_sidecar(p).rows for k, p in paths.items()}
        return {"rows": counts, "line": ", ".join(f"{k} {v}" for k, v in counts.items()) + " rows"}

    def stage_label(self) -> dict:
        import torch

        from hubkit.data.label import LabelCache, label_table
        from hubkit.data.labelers import TransformersLabeler
        from hubkit.data.sidecar import read_sidecar
        from hubkit.data.tables import open_table

        model, tok = self._base_model_and_tokenizer(torch.float32)  # bf16 generation is no faster on CPU
        name = f"transformers:{self.s.model}"
        batch = 16
        backend = TransformersLabeler(model, tok, name, max_new_tokens=self.s.label_tokens, batch_size=batch)
        tables = ("av_sft", "ar_sft")
        n = sum(open_table(self.data / "splits" / f"{t}.parquet")[1].rows for t in tables)
        bar = _bar(2 * n, "label (labeler + auditor answers)", self.progress)
        scrub = ""
        if self.s.quick:
            from hubkit.testing import MARKER

            scrub = MARKER
        labeler = _CountingLabeler(backend, bar, batch, scrub)
        # A real model's labels go to the shared cache (a --fresh run, or another tool, reuses them); the
        # tiny model's stay in the run folder.
        cache = LabelCache(self.data / "labels.sqlite" if self.s.quick else LabelCache.default_path())
        counts: dict[str, int] = {}
        try:
            for t in tables:
                path = label_table(
                    self.data / "splits" / f"{t}.parquet",
                    self.data / "labeled" / f"{t}.parquet",
                    labeler,
                    labeler,
                    rows_per_chunk=64,
                    cache=cache,
                )
                for k, v in read_sidecar(path).labeling.status_counts.items():
                    counts[k] = counts.get(k, 0) + v
        finally:
            cache.close()
            bar.close()
        return {"status_counts": counts, "line": f"{sum(counts.values())} rows labeled by {name} ({counts})"}

    def stage_build(self) -> dict:
        from hubkit.data.build import build_from_dirs
        from hubkit.data.sidecar import read_sidecar

        paths = build_from_dirs(self.data / "splits", self.data / "labeled", self.data / "built")
        rows = {k: read_sidecar(p).rows for k, p in paths.items()}
        if rows.get("av_sft", 0) < 2 or rows.get("ar_sft", 0) < 2:
            raise DemoError(f"demo: too few usable labeled rows to train on ({rows}); raise --rows")
        return {
            "tables": {k: str(p) for k, p in paths.items()},
            "rows": rows,
            "line": ", ".join(f"{k} {v}" for k, v in rows.items()) + " rows",
        }

    # -- training ------------------------------------------------------------------------------
    def recipe_dict(self) -> dict[str, Any]:
        """The training recipe the demo runs (written to run/recipe.yaml; `hubkit train` reads the same)."""
        s, built = self.s, self.data / "built"
        every = math.ceil(s.steps / (2 if s.quick else 3))  # the AV trajectory: 2 (quick) or 3 checkpoints
        quick = s.quick
        adapter = {
            "kind": "lora",
            "r": 4 if quick else 16,
            "alpha": 8 if quick else 32,
            "target_modules": "all-linear",
        }
        nla: dict[str, Any] = {
            "injection_scheme": "embedding_replace",
            "injection_scale": "embedding_norm",
            "mse_scale": "sqrt_d_model",
        }
        if not quick:
            nla["av_template"] = (
                "Here is an activation vector: <vector>{injection_char}</vector>\n"
                "Explain what it encodes inside <explanation></explanation> tags."
            )
        optim = {"lr": 2e-3 if quick else 5e-4, "schedule": "cosine", "warmup_steps": min(5, s.steps // 4)}
        return {
            "base_model": self.base,
            "layer": self.layer,
            "output_dir": str(self.run),
            "seed": s.seed,
            "dtype": s.dtype,
            "nla": nla,
            "av": {
                "data": str(built / "av_sft.parquet"),
                "steps": s.steps,
                "micro_batch_size": 4,
                "checkpoint_every": every,
                "max_length": 16 if quick else 64,
                "adapter": adapter,
                "optim": optim,
            },
            "ar": {
                "data": str(built / "ar_sft.parquet"),
                "steps": s.steps,
                "micro_batch_size": 8,
                "checkpoint_every": s.steps,
                "max_length": 16 if quick else 64,
                "head_lr": 1e-3,
                "adapter": adapter,
                "optim": optim,
            },
            "grpo": {
                "data": str(built / "rl.parquet"),
                "steps": s.grpo_steps,
                "micro_batch_size": 2,
                "group_size": s.group_size,
                "max_new_tokens": s.grpo_tokens,
                "temperature": 1.0,
                "checkpoint_every": s.grpo_steps,
                "adapter": adapter,
                "optim": {"lr": 1e-5, "schedule": "constant"},
            },
        }

    def recipe(self):
        from hubkit.train.recipe import recipe_from_dict

        recipe = recipe_from_dict(self.recipe_dict(), "hubkit demo recipe")
        recipe.save(self.run / "recipe.yaml")
        return recipe

    def _train(self, stage: str, fn, total: int) -> Path:
        from hubkit.train.loop import RunOptions

        recipe = self.recipe()
        opts = RunOptions(resume=True, quiet=True, device="cpu")
        with _watch_metrics(self.run / stage, total, f"train {stage}", self.progress):
            return Path(fn(recipe, opts))

    def stage_train_ar(self) -> dict:
        from hubkit.train.sft_ar import train_ar

        last = self._train("ar", train_ar, self.s.steps)
        return {
            "checkpoint": str(last),
            "loss": _last_loss(self.run / "ar"),
            "line": _loss_line(self.run / "ar", last),
        }

    def stage_train_av(self) -> dict:
        from hubkit.train.sft_av import train_av

        last = self._train("av", train_av, self.s.steps)
        return {
            "checkpoint": str(last),
            "loss": _last_loss(self.run / "av"),
            "line": _loss_line(self.run / "av", last),
        }

    def stage_grpo(self) -> dict:
        from hubkit.train import trajectory as T
        from hubkit.train.grpo import PolicyCollapsed, train_grpo

        try:
            last = self._train("grpo", train_grpo, self.s.grpo_steps)
        except PolicyCollapsed as exc:
            fallback = T.latest_step(self.run / "grpo") or Path(
                self.state["stages"]["train_av"]["checkpoint"]
            )
            note = f"GRPO stopped early ({exc}); the pair uses {fallback}"
            self.notes.append(note)
            return {"checkpoint": str(fallback), "collapsed": True, "line": note}
        metrics = _metrics(self.run / "grpo")
        reward = metrics[-1].get("reward") if metrics else None
        parsed = metrics[-1].get("parsed") if metrics else None
        extra = f"; last step: reward {reward:.4f}, parsed {parsed:.0%}" if reward is not None else ""
        return {"checkpoint": str(last), "collapsed": False, "line": f"{last.name}{extra}"}

    # -- eval ----------------------------------------------------------------------------------
    def _eval_kwargs(self) -> dict[str, Any]:
        return dict(max_new_tokens=self.s.eval_tokens, batch_size=16, ar_batch_size=32, n_boot=self.s.n_boot)

    def stage_eval(self) -> dict:
        from hubkit.eval.report import checkpoint_record
        from hubkit.eval.run import base_record, evaluate_pair, evaluate_trajectory
        from hubkit.pair import NLAPair

        built = self.data / "built"
        table = built / "eval.parquet"
        train_tables = [built / "av_sft.parquet", built / "ar_sft.parquet", built / "rl.parquet"]
        av = Path(self.state["stages"]["grpo"]["checkpoint"])
        ar = Path(self.state["stages"]["train_ar"]["checkpoint"])
        pair = NLAPair.from_pretrained(av=av, ar=ar)
        records: dict[str, Any] = {"av": checkpoint_record(av), "ar": checkpoint_record(ar)}
        base = base_record(av, ar, None)
        if base is not None:
            records["base"] = base
        self.echo("    evaluating the released pair on the held-out documents")
        report = evaluate_pair(
            pair,
            table,
            out_dir=self.evals / "pair",
            seed=self.s.seed,
            train_tables=train_tables,
            checkpoints=records,
            progress=self.progress,
            **self._eval_kwargs(),
        )
        del pair
        self.echo("    evaluating each AV SFT checkpoint (the trajectory) with the same AR")
        evaluate_trajectory(
            self.run / "av",
            table,
            ar=ar,
            out_dir=self.evals / "trajectory",
            seed=self.s.seed,
            train_tables=train_tables,
            progress=self.progress,
            **self._eval_kwargs(),
        )
        figs = headline_figures(json.loads((self.evals / "pair" / "eval.json").read_text()))
        return {
            "pair": str(self.evals / "pair" / "eval.json"),
            "trajectory": str(self.evals / "trajectory" / "eval.json"),
            "line": f"round-trip cos {figs['cos_mean']:.3f} [{figs['cos_ci'][0]:.3f}, {figs['cos_ci'][1]:.3f}], "
            f"top-1 {figs['top1']:.3f} vs chance {figs['top1_chance']:.3f} "
            f"({report.verdicts['identification'].replace('_', ' ')})",
        }

    # -- release -------------------------------------------------------------------------------
    def _card(self, what: str) -> dict[str, Any]:
        s = self.s
        base = self.card_base or _hf_repo(self.s.model)
        scale = (
            "a tiny random model, so its explanations mean nothing: it only exercises the plumbing"
            if s.quick
            else f"{s.steps} SFT steps per half and {s.grpo_steps} GRPO steps on {s.rows} labeled rows, on a CPU"
        )
        card: dict[str, Any] = {
            "title": f"hubkit demo: {what} ({base}, layer {self.layer})",
            "summary": f"Made by `hubkit demo` ({scale}). A demonstration of the pipeline, not a useful NLA.",
            "intended_use": "Seeing what an NLA release made by hubkit holds: the files, the card, the numbers and "
            "their provenance. Loading it back with `NLAPair.from_pretrained`.",
            "out_of_scope": "Any real interpretability claim: the training was minutes long on a handful "
            "of rows.",
            "limitations": "Trained for minutes on a few dozen rows of one small bundled corpus, with labels "
            "written by the same small base model. The numbers below are measured on held-out documents "
            "and say how weak it is; read the noise floor and the controls before the cosine.",
            "citation": "@misc{hubkit_demo,\n  title = {hubkit demo release},\n"
            "  note = {made by `hubkit demo`}\n}",
            "tags": ["hubkit-demo"],
            "language": ["en"],
        }
        if self.card_base:
            card["base_model"] = self.card_base
        return card

    def write_specs(self) -> dict[str, Path]:
        import yaml

        built = self.data / "built"
        rel = self.out.resolve()
        pair_av = self.state["stages"]["grpo"]["checkpoint"]
        pair_ar = self.state["stages"]["train_ar"]["checkpoint"]
        common = {"schema": "hubkit.release/1", "tag": TAG, "license": self._license()}
        specs = {
            "demo-pair": {
                **common,
                "kind": "pair",
                "repos": {"av": self.repos["av"], "ar": self.repos["ar"]},
                "checkpoints": {"av": pair_av, "ar": pair_ar},
                "eval": str(self.evals / "pair" / "eval.json"),
                "training_data": [str(built / "av_sft.parquet"), str(built / "ar_sft.parquet")],
                "datasets": [self.repos["dataset"]],
                "card": self._card("NLA pair"),
            },
            "demo-trajectory": {
                **common,
                "kind": "trajectory",
                "repos": {"trajectory": self.repos["trajectory"], "ar": self.repos["ar"]},
                "trajectory": str(self.run / "av"),
                "eval": str(self.evals / "trajectory" / "eval.json"),
                "partner_revision": TAG,
                "training_data": [str(built / "av_sft.parquet")],
                "datasets": [self.repos["dataset"]],
                "card": self._card("AV SFT trajectory"),
            },
            "demo-dataset": {
                **common,
                "kind": "dataset",
                "repos": {"dataset": self.repos["dataset"]},
                "data_files": [str(built / f"{t}.parquet") for t in ("av_sft", "ar_sft", "rl", "eval")],
                "card": {k: v for k, v in self._card("NLA training data").items() if k != "base_model"},
            },
        }
        folder = self.out / "releases"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, spec in specs.items():
            path = folder / f"{name}.yaml"
            path.write_text(
                f"# written by `hubkit demo` for the run in {rel}\n" + yaml.safe_dump(spec, sort_keys=False)
            )
            paths[name] = path
        return paths

    def _license(self) -> str:
        if self.s.quick:
            return "apache-2.0"
        from hubkit import models

        return models.get_spec(self.s.model).license

    def stage_release(self) -> dict:
        from hubkit.release.bundle import build_bundle
        from hubkit.release.spec import load_spec

        specs = self.write_specs()
        bundles = {}
        for name in specs:
            ls = load_spec(name, releases_dir=self.out / "releases", root=self.out)
            bundles[name] = str(build_bundle(ls, self.out / "dist" / name).root)
        return {"bundles": bundles, "line": f"3 bundles in {self.out / 'dist'}"}

    # -- hub -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def hub(self) -> Iterator[str]:
        """The local Hub over OUT/hub, with every client pointed at it and downloads cached under OUT."""
        import huggingface_hub.constants as hc
        import huggingface_hub.hf_api  # noqa: F401  (use_endpoint re-points its client; import it first)

        from hubkit.localhub import LocalHub, use_endpoint

        cache = self.out / "hf-cache"
        before = hc.HF_HUB_CACHE
        hc.HF_HUB_CACHE = str(cache)
        try:
            with LocalHub(self.hub_root) as server, use_endpoint(server.endpoint, token=TOKEN):
                yield server.endpoint
        finally:
            hc.HF_HUB_CACHE = before

    def stage_push(self) -> dict:
        from hubkit.release.bundle import Bundle
        from hubkit.release.push import push_bundle

        commits = {}
        with self.hub() as endpoint:
            if self.card_base:  # the tiny base goes to the Hub too, so the cards' base_model link resolves
                from hubkit import hub

                hub.push_folder(
                    Path(self.base),
                    self.card_base,
                    tag=TAG,
                    tag_message="hubkit demo base",
                    commit_message="tiny random base for hubkit demo --quick",
                    endpoint=endpoint,
                    token=TOKEN,
                )
            for folder in self.state["stages"]["release"]["bundles"].values():
                for p in push_bundle(Bundle.load(folder), endpoint=endpoint, token=TOKEN):
                    commits[p.target.repo_id] = p.result.commit
        return {
            "commits": commits,
            "line": f"{len(commits)} repos tagged {TAG} on the local Hub ({self.hub_root})",
        }

    def stage_reload(self) -> dict:
        """Load the pair back by repo id and tag; round-trip the first eval batch; compare with the eval's rows."""
        import numpy as np
        import pyarrow.parquet as pq
        import torch

        from hubkit.eval.table import EvalTable
        from hubkit.pair import NLAPair

        rows = pq.read_table(self.evals / "pair" / "rows.parquet").to_pydict()
        table = EvalTable.read(self.data / "built" / "eval.parquet")
        k = min(16, len(table))
        idx = np.asarray(rows["row"][:k])
        vectors = table.vectors[torch.as_tensor(idx)]
        with self.hub():
            pair = NLAPair.from_pretrained(av=self.repos["av"], ar=self.repos["ar"], revision=TAG)
            res = pair.round_trip(vectors, batch_size=16, max_new_tokens=self.s.eval_tokens)
        cos = res.cos.tolist()
        same_text = [a == b for a, b in zip(res.explanations, rows["explanation"][:k])]
        diff = float(np.max(np.abs(np.asarray(cos) - np.asarray(rows["cos"][:k]))))
        return {
            "rows": idx.tolist(),
            "explanations": res.explanations,
            "cos": cos,
            "mean_cos": float(np.mean(cos)),
            "same_explanations": int(sum(same_text)),
            "max_abs_cos_diff_vs_eval": diff,
            "line": f"{self.repos['av']} + {self.repos['ar']} @ {TAG}: mean cos {np.mean(cos):.3f} on {k} rows; "
            f"{sum(same_text)}/{k} explanations and cosines (max |Δ| {diff:.1e}) as in the eval",
        }

    # -- all -------------------------------------------------------------------------------------
    def run_all(self) -> DemoResult:
        order = [
            ("base", self.stage_base),
            ("extract", self.stage_extract),
            ("split", self.stage_split),
            ("label", self.stage_label),
            ("build", self.stage_build),
            ("train_ar", self.stage_train_ar),
            ("train_av", self.stage_train_av),
            ("grpo", self.stage_grpo),
            ("eval", self.stage_eval),
            ("release", self.stage_release),
            ("push", self.stage_push),
            ("reload", self.stage_reload),
        ]
        for i, (name, fn) in enumerate(order, 1):
            rec = self.stage(i, name, fn)
            if name == "base":
                self._set_base(rec)
        return self.result()

    def result(self) -> DemoResult:
        st = self.state["stages"]
        ev = json.loads(Path(st["eval"]["pair"]).read_text())
        bundles = {k: Path(v) for k, v in st["release"]["bundles"].items()}
        cards = {
            "av": bundles["demo-pair"] / "av" / "README.md",
            "ar": bundles["demo-pair"] / "ar" / "README.md",
            "trajectory": bundles["demo-trajectory"] / "trajectory" / "README.md",
            "dataset": bundles["demo-dataset"] / "dataset" / "README.md",
        }
        plots = sorted((self.evals / "pair" / "plots").glob("*.png")) + sorted(
            (self.evals / "trajectory" / "plots").glob("*.png")
        )
        notes = self.notes + ([st["grpo"]["line"]] if st["grpo"].get("collapsed") else [])
        return DemoResult(
            out_dir=self.out,
            settings=self.s,
            repos=dict(self.repos),
            tag=TAG,
            hub_root=self.hub_root,
            bundles=bundles,
            cards=cards,
            eval_json=Path(st["eval"]["pair"]),
            trajectory_eval_json=Path(st["eval"]["trajectory"]),
            plots=plots,
            checkpoints={"av": Path(st["grpo"]["checkpoint"]), "ar": Path(st["train_ar"]["checkpoint"])},
            figures=headline_figures(ev),
            reload={k: v for k, v in st["reload"].items() if k not in ("line",)},
            stage_seconds={k: float(v["seconds"]) for k, v in st.items()},
            notes=sorted(set(notes)),
        )


def _hf_repo(model: str) -> str:
    from hubkit import models

    return models.get_spec(model).hf_repo


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def _last_loss(run_dir: Path) -> float | None:
    m = _metrics(run_dir)
    return m[-1].get("loss") if m else None


def _loss_line(run_dir: Path, last: Path) -> str:
    m = _metrics(run_dir)
    if not m:
        return last.name
    return f"{last.name}; loss {m[0]['loss']:.4g} → {m[-1]['loss']:.4g} over {len(m)} steps"


# ---------------------------------------------------------------------------------------------- figures


def headline_figures(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers the summary quotes, read from a pair eval.json (nothing recomputed)."""
    f = ev["figures"]
    rt = f["round_trip"]["all"]
    empty = next(c for c in f["content_sensitivity"]["av"]["controls"] if c["name"] == "empty")
    t1 = next(t for t in f["identification"]["top"] if t["k"] == 1)
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
    }


# ---------------------------------------------------------------------------------------------- entry


def run_demo(
    out_dir: str | Path | None = None,
    model: str | None = None,
    rows: int | None = None,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    keep: bool = True,
    eval_rows: int | None = None,
    grpo_steps: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    echo: Echo | None = None,
) -> DemoResult:
    """Run the whole journey (see the module docstring) and return where everything is and what it measured.

    `keep` resumes a run with the same settings in `out_dir`; `keep=False` starts from an empty folder.
    `threads` is torch's CPU thread count (default: `default_threads`); it changes speed, not results
    beyond float rounding, so it is not part of the settings a kept run must match.
    """
    settings = demo_settings(model, rows, steps, quick, seed, eval_rows, grpo_steps)
    from hubkit.data.corpus import load_corpus

    settings.check_corpus(len(load_corpus("bundled")))
    if threads is not None and threads < 1:
        raise DemoError(f"demo: --threads must be >= 1, got {threads}")
    out = Path(out_dir).expanduser() if out_dir is not None else default_out()
    demo = _Demo(out, settings, echo or (lambda m: print(m, flush=True)), progress)
    demo.load_state(keep)
    n_threads = threads if threads is not None else default_threads(settings.quick)
    demo.echo(
        f"hubkit demo: {settings.model}, {settings.rows} labeled rows, {settings.eval_rows} held-out rows, "
        f"{settings.steps} SFT steps, {settings.grpo_steps} GRPO steps, {n_threads} CPU thread(s) → {out}"
    )
    with _quiet_libraries(), _threads(n_threads), warnings.catch_warnings():
        # transformers deprecation chatter (e.g. `is_gradient_checkpointing`, hit by attribute scans)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        return demo.run_all()


def default_threads(quick: bool) -> int:
    """torch's own thread count, except one thread for tiny models or when other processes already load
    every core: then a second thread mostly waits on the first (measured 3x slower on a loaded 2-core machine)."""
    import os

    import torch

    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        busy = False
    return 1 if quick or busy else torch.get_num_threads()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No per-file download/upload or weight-loading bars from huggingface_hub and transformers: the demo
    shows one bar per stage instead."""
    from huggingface_hub import utils as hf_utils
    from transformers.utils import logging as tf_logging

    hub_was_on = not hf_utils.are_progress_bars_disabled()
    tf_was_on = tf_logging.is_progress_bar_enabled()
    hf_utils.disable_progress_bars()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hub_was_on:
            hf_utils.enable_progress_bars()
        if tf_was_on:
            tf_logging.enable_progress_bar()
