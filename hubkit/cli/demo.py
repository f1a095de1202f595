"""`hubkit demo`: the whole NLA journey offline, then its summary."""

from __future__ import annotations

from typing import Any

import click

from hubkit.cli.options import out_dir_option
from hubkit.data.labeler_registry import choice_help
from hubkit.demo.run import run_demo
from hubkit.demo.settings import FULL
from hubkit.demo.summary import summary_text


@click.command("demo")
@out_dir_option("Run folder (default: $HUBKIT_CACHE/demo, i.e. ~/.cache/hubkit/demo).")
@click.option("--model", default=None, help="Offline base model (default: smollm2-135m; `hubkit models list`).")
@click.option("--rows", type=int, default=None, help=f"Labeled training rows, AV + AR together (default {FULL['rows']}).")
@click.option("--eval-rows", type=int, default=None, help=f"Held-out rows evaluated (default {FULL['eval_rows']}).")
@click.option("--steps", type=int, default=None, help=f"AV SFT steps (default {FULL['steps']}).")
@click.option("--ar-steps", type=int, default=None, help=f"AR SFT steps (default {FULL['ar_steps']}).")
@click.option("--grpo-steps", type=int, default=None, help=f"GRPO steps (default {FULL['grpo_steps']}).")
@click.option(
    "--labeler",
    default=None,
    help="Labeler (default: context). context quotes the text before each vector's position (no model; the "
    "NLA learns to quote context); transformers has the base model write and audit explanations (the LLM path, "
    "the way to useful explanations). Choices: " + choice_help(),
)
@click.option(
    "--dtype", default=None, help="Training dtype (default: auto, bf16 where the CPU/GPU has native bf16, else float32)."
)
@click.option("--quick", is_flag=True, help="A tiny random model and a few rows: the plumbing in under a minute.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch (default: all, or 1 when other processes already load every core).",
)
@click.option(
    "--injection",
    default=None,
    help=f"Where the AV injects its vector (default {FULL['injection']}): embed_actnorm (the marker's embedding "
    "replaced at the median residual norm of the NLA's layer; the scheme the vLLM engine serves), embed_embnorm "
    "(the same at the median embedding norm), resid_block1 (norm-matched residual addition after block 1), "
    "resid_layer (the same after the extraction layer).",
)
@click.option(
    "--keep/--fresh",
    default=True,
    show_default=True,
    help="--keep resumes an earlier run with the same settings; --fresh deletes the run folder first.",
)
def demo(out_dir: str | None, **settings: Any) -> None:
    """The whole NLA journey offline: data, labels, AR/AV/GRPO training, eval, releases, local Hub, reload."""
    click.echo(summary_text(run_demo(out_dir, echo=click.echo, **settings)))
