"""`hubkit check`: the lint of a base model or an NLA checkpoint."""

from __future__ import annotations

import sys

import click

from hubkit.cli.options import revision_option, subfolder_option


@click.command()
@click.argument("target")
@click.option("--base-model", default=None, help="Base model to measure the injection scale against.")
@revision_option
@subfolder_option
def check(target: str, base_model: str | None, revision: str | None, subfolder: str | None) -> None:
    """Lint a base model (registry name or folder) or an NLA checkpoint (folder or repo id)."""
    from hubkit.check import check as run_check  # lazy: torch stays out of --help

    report = run_check(target, base_model=base_model, revision=revision, subfolder=subfolder)
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)
