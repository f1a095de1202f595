"""`hubkit demo`: the whole NLA journey, offline, in one call.

extract → split → label → build → train AR → train AV → GRPO → eval (pair + trajectory) → release
(pair, trajectory, dataset) → push to a local Hub → load the pair back by repo id and tag.

Every stage calls the library function a user would call (nothing shells out) and returns a typed
result (`hubkit.demo.results`) that the later stages take as arguments. A run writes under one folder
(default ``$HUBKIT_CACHE/demo``)::

    OUT/demo.json        settings, and each finished stage's result and time (what `--keep` resumes from)
    OUT/base/            the tiny random base (`--quick` only)
    OUT/data/            activations, splits, labeled and built tables (+ sidecars)
    OUT/run/             recipe.yaml; av/, ar/, grpo/ trajectories (step_* checkpoints)
    OUT/eval/pair/       eval.json, rows.parquet, ar_only.json, plots/ of the released pair
    OUT/eval/trajectory/ eval.json and plots/ over the AV SFT checkpoints
    OUT/releases/        the three release specs the demo wrote (built as `ReleaseSpec` objects)
    OUT/dist/            the three bundles (model and dataset cards: README.md in each repo folder)
    OUT/hub/             the local Hub's storage (repos persist between runs)
    OUT/hf-cache/        huggingface_hub's download cache for the reload

Labels are model-free context quotes by default, so the trained pair demonstrably reads its vectors
in minutes on a CPU; ``--labeler transformers`` has the base model write them (the LLM path).
"""

from hubkit.demo.results import headline_figures
from hubkit.demo.run import DemoResult, run_demo
from hubkit.demo.settings import DemoError, DemoSettings, default_out, demo_settings

__all__ = [
    "DemoError",
    "DemoResult",
    "DemoSettings",
    "default_out",
    "demo_settings",
    "headline_figures",
    "run_demo",
]
