"""Demo stages 6-8: the recipe, then AR SFT, AV SFT and GRPO (`hubkit.train`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hubkit.constants import METRICS_FILE
from hubkit.demo.progress import watch_metrics
from hubkit.demo.results import BaseModel, Built, Grpo, Trained
from hubkit.demo.settings import nla_block
from hubkit.demo.state import Demo
from hubkit.precision import resolve_dtype_name
from hubkit.train import trajectory
from hubkit.train.alarms import AlarmTripped
from hubkit.train.grpo import PolicyCollapsed, train_grpo
from hubkit.train.loop import RunOptions, read_metrics_lines
from hubkit.train.recipe import recipe_from_dict
from hubkit.train.sft_ar import train_ar
from hubkit.train.sft_av import train_av


def recipe_dict(d: Demo, base: BaseModel, built: Built) -> dict[str, Any]:
    """The training recipe the demo runs (written to run/recipe.yaml; `hubkit train` reads the same)."""
    s, quick = d.settings, d.settings.quick
    every = math.ceil(s.steps / (2 if quick else 3))  # the AV trajectory: 2 (quick) or 3 checkpoints
    adapter = {
        "kind": "lora",
        "r": 4 if quick else 16,
        "alpha": 8 if quick else 32,
        "target_modules": "all-linear",
    }

    def sft(table: str, steps: int, micro_batch_size: int, checkpoint_every: int) -> dict[str, Any]:
        return {
            "data": str(built.table(table)),
            "steps": steps,
            "micro_batch_size": micro_batch_size,
            "checkpoint_every": checkpoint_every,
            "max_length": 40 if quick else 48,
            "adapter": adapter,
            "optim": {
                "lr": 2e-3 if quick else 1e-3,
                "schedule": "cosine",
                "warmup_steps": min(5, steps // 4),
            },
        }

    return {
        "base_model": base.base,
        "layer": base.layer,
        "output_dir": str(d.layout.run),
        "seed": s.seed,
        "dtype": resolve_dtype_name(s.dtype, "cpu"),  # ``auto`` chosen from this machine's hardware
        "nla": nla_block(s.injection, base.layer, quick),
        "av": sft("av_sft", s.steps, 4 if quick else 8, every),
        "ar": {**sft("ar_sft", s.ar_steps, 8 if quick else 16, s.ar_steps), "head_lr": 1e-3},
        # the published recipes' shape (the GRPO recipe's defaults: KL 0.01 to the SFT AV, the AR trained
        # alongside at 5x the AV's rate, failures -2); lr 1e-4 for the LoRA AV (EasyNLA's rate for LoRA);
        # the cap holds the longest context label, the length penalty starts just below it
        "grpo": {
            "data": str(built.table("rl")),
            "steps": s.grpo_steps,
            "micro_batch_size": 2,
            "group_size": s.group_size,
            "max_new_tokens": s.grpo_tokens,
            "length_target": max(1, s.grpo_tokens - 4),
            "temperature": 1.0,
            "checkpoint_every": max(1, math.ceil(s.grpo_steps / 2)),
            "adapter": adapter,
            "optim": {"lr": 2e-3 if quick else 1e-4, "schedule": "constant"},
            # the AR at the AV's rate, not kitft's 5x for full fine-tunes: with LoRA at 5x the co-trained AR
            # drifted to the vectors' mean (README, "Reinforcement (GRPO), measured"; EasyNLA uses 0.8x)
            "ar_lr": 2e-3 if quick else 1e-4,
        },
    }


def _train(d: Demo, base: BaseModel, built: Built, stage: str, fn, total: int) -> Path:
    rec = recipe_from_dict(recipe_dict(d, base, built), "hubkit demo recipe")
    rec.save(d.layout.run / "recipe.yaml")
    with watch_metrics(d.layout.run / stage, total, f"train {stage}", d.progress):
        return Path(fn(rec, RunOptions(resume=True, quiet=True, device="cpu")))


def metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    return [json.loads(line) for line, _ in read_metrics_lines(path)] if path.is_file() else []


def stage_train_sft(d: Demo, base: BaseModel, built: Built, stage: str) -> Trained:
    fn, total = (train_ar, d.settings.ar_steps) if stage == "ar" else (train_av, d.settings.steps)
    last = _train(d, base, built, stage, fn, total)
    m = metrics(d.layout.run / stage)
    return Trained(
        checkpoint=str(last),
        run_dir=str(d.layout.run / stage),
        dtype=resolve_dtype_name(d.settings.dtype, "cpu"),
        first_loss=m[0].get("loss") if m else None,
        last_loss=m[-1].get("loss") if m else None,
        steps_logged=len(m),
    )


def stage_grpo(d: Demo, base: BaseModel, built: Built, av: Trained, ar: Trained) -> Grpo:
    """GRPO from the SFT pair; the AV and its co-trained AR of the last good step (the SFT pair when RL
    stopped before its first checkpoint)."""
    stopped = None
    try:
        last = _train(d, base, built, "grpo", train_grpo, d.settings.grpo_steps)
    except (PolicyCollapsed, AlarmTripped) as exc:
        fallback = trajectory.latest_step(d.layout.run / "grpo")
        stopped = f"GRPO stopped early ({exc}); the pair uses {fallback or 'the SFT pair'}"
        if fallback is None:
            return Grpo(checkpoint=av.checkpoint, ar_checkpoint=ar.checkpoint, collapsed=True, note=stopped)
        last = fallback
    m = metrics(d.layout.run / "grpo")
    own_ar = last / "ar"
    return Grpo(
        checkpoint=str(last),
        ar_checkpoint=str(own_ar if own_ar.is_dir() else ar.checkpoint),
        collapsed=stopped is not None,
        note=stopped,
        reward=m[-1].get("reward") if m else None,
        parsed=m[-1].get("succeeded", m[-1].get("parsed")) if m else None,
        steps=len(m),
    )
