"""The sizes and choices of one demo run (`DemoSettings`), and the constants every stage shares."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubkit import model_registry
from hubkit.cache import cache_dir
from hubkit.data.labeler_registry import check_choice
from hubkit.errors import HubkitError

STATE_FILE = "demo.json"
STATE_SCHEMA = "hubkit.demo/2"
DEMO_ORG = "hubkit-demo"
TAG = "v0.1"
TOKEN = "hf_demo_local"  # the local Hub's write token for the demo's own storage
QUICK_MODEL = "tiny-llama"
DEFAULT_LABELER = "context"
STAGES = tuple("base extract split label build train_ar train_av grpo eval release push reload".split())


class DemoError(HubkitError, RuntimeError):
    """The demo cannot run as asked (a folder from another run, bad sizes, a stage that failed)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run. `rows` counts labeled training rows (AV SFT + AR SFT together)."""

    model: str
    rows: int
    eval_rows: int
    rl_rows: int
    steps: int  # AV SFT steps
    ar_steps: int
    grpo_steps: int
    seed: int
    quick: bool
    labeler: str  # a `hubkit.data.labeler_registry` choice: context[:N] (default) or transformers
    positions_per_doc: int
    label_tokens: int  # LLM labeler/auditor answer length
    eval_tokens: int  # AV explanation length at eval and reload
    grpo_tokens: int
    group_size: int
    n_boot: int
    dtype: str  # training dtype: "auto" resolves from the hardware (`hubkit.precision`)
    injection: str  # an `INJECTIONS` name: where the AV injects its vector

    def __post_init__(self) -> None:
        for name in ("rows", "eval_rows", "rl_rows", "steps", "ar_steps", "grpo_steps", "positions_per_doc"):
            if getattr(self, name) < 1:
                raise DemoError(f"demo: `{name}` must be >= 1, got {getattr(self, name)}")
        if self.rows < 4 * self.positions_per_doc:
            raise DemoError(
                f"demo: --rows must be at least {4 * self.positions_per_doc} (two documents per half)"
            )
        if self.eval_rows < 10:
            raise DemoError("demo: the eval needs at least 10 held-out rows (bootstrap, noise floor, top-5)")
        if self.injection not in INJECTIONS:
            raise DemoError(f"demo: --injection {self.injection!r}: choose one of {', '.join(INJECTIONS)}")
        try:
            check_choice(self.labeler)
        except HubkitError as exc:
            raise DemoError(f"demo: --labeler: {exc}") from exc

    def check_corpus(self, n_docs: int) -> None:
        need = sum(self.docs.values())
        if need > n_docs:
            raise DemoError(
                f"demo: these sizes need {need} documents ({self.positions_per_doc} rows each) but the bundled "
                f"corpus has {n_docs}; lower --rows or --eval-rows"
            )

    @property
    def docs(self) -> dict[str, int]:
        """Documents per split: `rows` shared by the two SFT halves, `positions_per_doc` rows per document."""
        per = self.positions_per_doc
        half = math.ceil(self.rows / 2 / per)
        return {
            "av_sft": half,
            "ar_sft": half,
            "rl": math.ceil(self.rl_rows / per),
            "eval": math.ceil(self.eval_rows / per),
        }

    @property
    def context_labels(self) -> bool:
        return self.labeler.partition(":")[0] == "context"

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
    labeler: str | None = None,
    dtype: str | None = None,
    ar_steps: int | None = None,
    injection: str | None = None,
) -> DemoSettings:
    """Settings for a run: the quick defaults (a tiny random model, seconds) or the full ones
    (SmolLM2-135M, context labels; sizes chosen by measurement, see the README)."""
    if quick and model not in (None, QUICK_MODEL):
        raise DemoError(f"--quick runs on a tiny random model; drop --model {model!r} or --quick")
    sizes = QUICK if quick else FULL
    given = dict(rows=rows, steps=steps, eval_rows=eval_rows, grpo_steps=grpo_steps, ar_steps=ar_steps)
    given |= dict(labeler=labeler, dtype=dtype, injection=injection)
    chosen = {**sizes, **{k: v for k, v in given.items() if v is not None}}
    if quick and ar_steps is None:
        chosen["ar_steps"] = chosen["steps"]  # the tiny run trains the AR as long as the AV
    if not quick:  # the offline registry name for `model` (a name or the Hub id it stands in for)
        from hubkit import models  # lazy: models loads torch; the CLI reads these settings at startup

        model = models.get_spec(model or model_registry.load_registry()[1]).name
    return DemoSettings(model=model or QUICK_MODEL, seed=seed, quick=quick, **chosen)


# The full run's sizes and injection, chosen by measurement on SmolLM2-135M layer 20 with context labels
# (benchmarks/bench_injection_sites.py and whole default runs; the figures are in the README, "The demo's
# choices, measured": embedding replacement at the activation norm read the most vectors, 36/64).
FULL: dict[str, Any] = {
    "rows": 800,
    "label_tokens": 40,
    "n_boot": 1000,
    "labeler": DEFAULT_LABELER,
    "dtype": "auto",
    "eval_rows": 128,
    "rl_rows": 32,
    "steps": 60,
    "ar_steps": 100,
    "grpo_steps": 8,
    "positions_per_doc": 4,
    "eval_tokens": 40,
    "grpo_tokens": 40,  # the longest context:10 label is 32 tokens with its tags and EOS
    "group_size": 8,  # both published recipes
    "injection": "embed_actnorm",
}
QUICK: dict[str, Any] = {
    **FULL,
    **dict(rows=16, eval_rows=12, rl_rows=4, steps=4, ar_steps=4, grpo_steps=1, positions_per_doc=2),
    **dict(label_tokens=10, eval_tokens=8, grpo_tokens=10, group_size=2, n_boot=200),  # grpo: tags + a token
}

# Where the AV injects its vector (measured side by side: README, "The demo";
# benchmarks/bench_injection_sites.py). Names as in that benchmark; `hubkit demo --help` says each in words.
INJECTIONS: dict[str, dict[str, Any]] = {
    "resid_layer": {"injection_scheme": "residual_add", "injection_scale": None, "injection_block": "layer"},
    "resid_block1": {"injection_scheme": "residual_add", "injection_scale": None, "injection_block": 1},
    "embed_embnorm": {"injection_scheme": "embedding_replace", "injection_scale": "embedding_norm"},
    "embed_actnorm": {"injection_scheme": "embedding_replace", "injection_scale": "activation_norm"},
}
AV_TEMPLATE = (
    "Here is an activation vector: <vector>{injection_char}</vector>\n"
    "Explain what it encodes inside <explanation></explanation> tags."
)


def nla_block(injection: str, layer: int, quick: bool) -> dict[str, Any]:
    """The recipe's `nla:` section for an `INJECTIONS` name at `layer`."""
    nla = {k: (layer if v == "layer" else v) for k, v in INJECTIONS[injection].items()}
    nla["mse_scale"] = "sqrt_d_model"
    if not quick:
        nla["av_template"] = AV_TEMPLATE
    return nla


def default_out() -> Path:
    """``$HUBKIT_CACHE/demo`` (default ``~/.cache/hubkit/demo``)."""
    return cache_dir() / "demo"
