"""`hubkit train {av,ar,grpo,check,fields}`: training stages from a recipe (also under accelerate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hubkit.cli.options import HubkitGroup, stack
from hubkit.precision import DTYPE_CHOICES
from hubkit.train.recipe import load_recipe, recipe_help

STAGES = ("av", "ar", "grpo")


@click.group("train", cls=HubkitGroup)
def train() -> None:
    """Train the halves of an NLA from a recipe (training/*.yaml): av, ar, then grpo."""


_run_options = stack(
    click.argument("recipe", type=click.Path(exists=True, dir_okay=False)),
    click.option("--data", default=None, help="Input parquet (overrides the recipe's stage `data`)."),
    click.option("--out", default=None, help="Run folder (default: <output_dir>/<stage>)."),
    click.option("--steps", type=int, default=None, help="Override the stage's `steps`."),
    click.option("--seed", type=int, default=None, help="Override the recipe's `seed`."),
    click.option("--resume", is_flag=True, help="Continue from the last step_* checkpoint in the run folder."),
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
    click.option("-q", "--quiet", is_flag=True, help="No per-step log lines (metrics.jsonl is still written)."),
    click.option(
        "--debug-hang-after-step", "hang_after_step", type=int, default=None, hidden=True,
        help="Test hook: block forever after this step.",
    ),
)


def _run(
    stage: str, train_fn: Callable[..., Path], recipe: str, steps: int | None, seed: int | None,
    dtype: str | None, overrides: dict[str, Any] | None = None, **run: Any,
) -> None:
    """Train `stage` of `recipe` with the overrides; a lost process is reported naming the last checkpoint."""
    from hubkit.train.distributed import stop_report  # lazy: torch stays out of --help
    from hubkit.train.loop import RunOptions  # lazy: torch stays out of --help

    given = {"dtype": dtype, f"{stage}.steps": steps, "seed": seed, **(overrides or {})}
    r = load_recipe(recipe, {k: v for k, v in given.items() if v is not None})
    r.stage(stage)  # a clear error now when the section is missing
    with stop_report(Path(run["out"]) if run["out"] else Path(r.output_dir) / stage, stage):
        last = train_fn(r, RunOptions(**run))
    click.echo(f"{stage.upper()} checkpoint: {last}")


def _sft_command(stage: str, doc: str) -> None:
    """Define `hubkit train <stage>` for a supervised stage (av or ar): the shared options, its own trainer."""

    @train.command(stage, help=doc)
    @_run_options
    def command(**options: Any) -> None:
        from hubkit.train import sft_ar, sft_av  # lazy: torch stays out of --help

        _run(stage, sft_av.train_av if stage == "av" else sft_ar.train_ar, **options)


_sft_command("av", "AV supervised fine-tuning on an av_sft parquet (vector → explanation).")
_sft_command("ar", "AR supervised fine-tuning on an ar_sft parquet (explanation → vector).")


@train.command("grpo")
@_run_options
@click.option("--av-init", default=None, help="AV checkpoint to start from (overrides grpo.av_init).")
@click.option("--ar-init", default=None, help="AR checkpoint giving rewards (overrides grpo.ar_init).")
def train_grpo_cmd(av_init: str | None, ar_init: str | None, **options: Any) -> None:
    """GRPO on an rl parquet: the AV samples explanations, the AR's reconstruction error is the reward."""
    from hubkit.train.grpo import train_grpo  # lazy: torch stays out of --help

    _run("grpo", train_grpo, overrides={"grpo.av_init": av_init, "grpo.ar_init": ar_init}, **options)


@train.command("check")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
def check_cmd(recipe: str) -> None:
    """Validate a recipe without loading a model: print its stages and config hashes."""
    from hubkit.train.data import check_columns  # lazy: torch stays out of --help

    r = load_recipe(recipe)
    sections = {stage: getattr(r, stage) for stage in STAGES if getattr(r, stage) is not None}
    for stage, section in sections.items():
        if section.data is not None and Path(section.data).exists():  # absent: not built yet
            check_columns(section.data, stage, f"{recipe}: field `{stage}.data`")
    click.echo(f"{recipe}: ok — base {r.base_model}, layer {r.layer}, output {r.output_dir}")
    if not r.distributed.is_default():
        d = r.distributed
        click.echo(
            f"  distributed: {d.strategy}, global batch {d.global_batch_size or 'micro x accum x processes'}, "
            f"mixed precision {d.mixed_precision}"
        )
    for stage, section in sections.items():
        click.echo(
            f"  {stage}: {section.steps} steps × {section.micro_batch_size}×{section.grad_accum} rows, "
            f"{section.adapter.kind}, lr {section.optim.lr:g}, config sha256 {r.config_sha256(stage)[:16]}"
        )


@train.command("fields")
def fields_cmd() -> None:
    """List every recipe field with its default and meaning."""
    click.echo("\n".join(recipe_help()))
