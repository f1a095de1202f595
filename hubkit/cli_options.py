"""Click option groups shared by the `hubkit` commands (here, not in `hubkit.cli`, which imports the commands).

`HubkitGroup` reports hubkit errors in one line; `stack` turns a list of click decorators into one, so a block of options written once serves every
command that takes it; `load_options` is the block for commands that load a checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click

from hubkit.errors import HubkitError

F = TypeVar("F", bound=Callable[..., object])


class HubkitGroup(click.Group):
    """A click group that turns hubkit's own errors into one clear line and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HubkitError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


def stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """One decorator that applies `decorators` as if written one above the other (first one on top)."""

    def apply(fn: F) -> F:
        for decorate in reversed(decorators):
            fn = decorate(fn)
        return fn

    return apply


load_options = stack(
    click.option("--revision", default=None, help="Branch, tag or commit of a Hub repo."),
    click.option("--subfolder", default=None, help="Checkpoint subfolder (e.g. step_000050)."),
    click.option("--base-model", default=None, help="Where the base weights come from (local path or name)."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1 …"),
    click.option("--dtype", default=None, help="float32, bfloat16 or float16."),
)
"""``--revision --subfolder --base-model --device --dtype``: where a checkpoint and its base come from."""

engine_option = click.option(
    "--engine",
    default="auto",
    show_default=True,
    envvar="HUBKIT_ENGINE",
    help="AV generation engine: auto (vLLM when installed, else transformers), transformers, vllm, "
    "or the URL of a `vllm serve --enable-prompt-embeds` endpoint (http://host:port). Env: HUBKIT_ENGINE.",
)
"""``--engine``: where AV generation runs (`hubkit.engines`)."""
