"""`hubkit train {av,ar,grpo,check,fields}`: thin click shells over the training functions.

Every command runs unchanged under ``accelerate launch`` (data parallel); see training/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubkit.cli_options import HubkitGroup, stack
from hubkit.precision import DTYPE_CHOICES


@click.group("train", cls=HubkitGroup)
def train() -> None:
    """Train the halves of an NLA from a recipe (training/*.yaml): av, ar, then grpo."""


_run_options = stack(
    click.argument("recipe", type=click.Path(exists=True, dir_okay=False)),
    click.option("--data", default=None, help="Input parquet (overrides the recipe's stage `data`)."),
    click.option("--out", default=None, help="Run folder (default: <output_dir>/<stage>)."),
    click.option("--steps", type=int, default=None, help="Override the stage's `steps`."),
    click.option("--seed", type=int, default=None, help="Override the recipe's `seed`."),
    click.option(
        "--resume", is_flag=True, help="Continue from the last step_* checkpoint in the run folder."
    ),
    click.option(
        "--resume-fallback",
        is_flag=True,
        help="Resume; when the last checkpoint fails its file hashes, set it aside (corrupt_step_*) and "
        "continue from the newest intact one.",
    ),
    click.option(
        "--resume-unverified",
        is_flag=True,
        help="Resume even from a checkpoint written without its file hashes (.hubkit_sha256.json).",
    ),
    click.option("--device", default=None, help="cpu, cuda, cuda:1 … (default: accelerate's choice)."),
    click.option(
        "--dtype",
        type=click.Choice(DTYPE_CHOICES),
        default=None,
        help="Override the recipe's `dtype` (default there: auto, i.e. bfloat16 where the hardware runs it "
        "natively, else float32).",
    ),
    click.option(
        "--allow-ood-injection",
        is_flag=True,
        help="Train even when the injection scale is >50× from the base's token-embedding norm "
        "(recorded in the meta).",
    ),
    click.option(
        "-q", "--quiet", is_flag=True, help="No per-step log lines (metrics.jsonl is still written)."
    ),
    click.option(
        "--debug-hang-after-step",
        type=int,
        default=None,
        hidden=True,
        help="Test hook: block forever after this step.",
    ),
)
"""The recipe and the options every training stage takes (all but recipe, steps, seed, dtype go to `_options`)."""


def _prepare(
    stage: str,
    recipe_path: str,
    steps: int | None,
    seed: int | None,
    extra: dict[str, Any] | None = None,
    dtype: str | None = None,
):
    from hubkit.train.recipe import load_recipe

    overrides: dict[str, Any] = dict(extra or {})
    if dtype is not None:
        overrides["dtype"] = dtype
    if steps is not None:
        overrides[f"{stage}.steps"] = steps
    if seed is not None:
        overrides["seed"] = seed
    recipe = load_recipe(recipe_path, overrides)
    recipe.stage(stage)  # a clear error now when the section is missing
    return recipe


def _stopping(stage: str, recipe, out: str | None):
    """One line naming the last good checkpoint when another process of the run is lost."""
    from pathlib import Path

    from hubkit.train.distributed import stop_report

    return stop_report(Path(out) if out else Path(recipe.output_dir) / stage, stage)


def _options(
    *,
    data,
    out,
    resume,
    resume_fallback,
    resume_unverified,
    device,
    allow_ood_injection,
    quiet,
    debug_hang_after_step,
):
    """The `RunOptions` of the command-line flags shared by the stages."""
    from hubkit.train.loop import RunOptions

    return RunOptions(
        out=out,
        data=data,
        resume=resume,
        resume_fallback=resume_fallback,
        resume_unverified=resume_unverified,
        allow_ood_injection=allow_ood_injection,
        device=device,
        hang_after_step=debug_hang_after_step,
        quiet=quiet,
    )


@train.command("av")
@_run_options
def train_av_cmd(recipe, steps, seed, dtype, **run) -> None:
    """AV supervised fine-tuning on an av_sft parquet (vector → explanation)."""
    from hubkit.train.sft_av import train_av

    r = _prepare("av", recipe, steps, seed, dtype=dtype)
    with _stopping("av", r, run["out"]):
        last = train_av(r, _options(**run))
    click.echo(f"AV checkpoint: {last}")


@train.command("ar")
@_run_options
def train_ar_cmd(recipe, steps, seed, dtype, **run) -> None:
    """AR supervised fine-tuning on an ar_sft parquet (explanation → vector)."""
    from hubkit.train.sft_ar import train_ar

    r = _prepare("ar", recipe, steps, seed, dtype=dtype)
    with _stopping("ar", r, run["out"]):
        last = train_ar(r, _options(**run))
    click.echo(f"AR checkpoint: {last}")


@train.command("grpo")
@_run_options
@click.option("--av-init", default=None, help="AV checkpoint to start from (overrides grpo.av_init).")
@click.option("--ar-init", default=None, help="AR checkpoint giving rewards (overrides grpo.ar_init).")
def train_grpo_cmd(recipe, steps, seed, dtype, av_init, ar_init, **run) -> None:
    """GRPO on an rl parquet: the AV samples explanations, the AR's reconstruction error is the reward."""
    from hubkit.train.grpo import train_grpo

    extra = {k: v for k, v in (("grpo.av_init", av_init), ("grpo.ar_init", ar_init)) if v is not None}
    r = _prepare("grpo", recipe, steps, seed, extra, dtype)
    with _stopping("grpo", r, run["out"]):
        last = train_grpo(r, _options(**run))
    click.echo(f"GRPO checkpoint: {last}")


@train.command("check")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
def check_cmd(recipe) -> None:
    """Validate a recipe without loading a model: print its stages and config hashes."""
    from hubkit.train.data import check_columns
    from hubkit.train.recipe import load_recipe

    r = load_recipe(recipe)
    for stage in ("av", "ar", "grpo"):
        section = getattr(r, stage)
        if section is not None and section.data is not None and Path(section.data).exists():
            check_columns(section.data, stage, f"{recipe}: field `{stage}.data`")  # absent: not built yet
    click.echo(f"{recipe}: ok — base {r.base_model}, layer {r.layer}, output {r.output_dir}")
    if not r.distributed.is_default():
        d = r.distributed
        click.echo(
            f"  distributed: {d.strategy}, global batch {d.global_batch_size or 'micro x accum x processes'}, "
            f"mixed precision {d.mixed_precision}"
        )
    for stage in ("av", "ar", "grpo"):
        section = getattr(r, stage)
        if section is None:
            continue
        click.echo(
            f"  {stage}: {section.steps} steps × {section.micro_batch_size}×{section.grad_accum} rows, "
            f"{section.adapter.kind}, lr {section.optim.lr:g}, config sha256 {r.config_sha256(stage)[:16]}"
        )


@train.command("fields")
def fields_cmd() -> None:
    """List every recipe field with its default and meaning."""
    from hubkit.train.recipe import recipe_help

    for line in recipe_help():
        click.echo(line)


if __name__ == "__main__":  # `python -m hubkit.train.commands av recipe.yaml` (tests, before registration)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    train()
