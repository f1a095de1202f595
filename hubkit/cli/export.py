"""`hubkit export`: a checkpoint in another tool's layout."""

from __future__ import annotations

import click

from hubkit.cli.options import revision_option, subfolder_option
from hubkit.precision import DTYPE_CHOICES


@click.command("export")
@click.argument("checkpoint")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("reference",)),  # hubkit.export.FORMATS, whose package loads torch
    default="reference",
    show_default=True,
    help="reference: the reference implementation's layout (full AV weights; truncated AR + value head).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new or empty folder.")
@click.option("--base-model", default=None, help="Base weights for an adapter whose meta names none (or a local copy).")
@click.option(
    "--dtype",
    default=None,
    type=click.Choice([name for name in DTYPE_CHOICES if name != "auto"]),
    help="Merge dtype (default: the training dtype the meta records, else float32).",
)
@revision_option
@subfolder_option
def export(checkpoint: str, fmt: str, out: str, **options: str | None) -> None:
    """Write CHECKPOINT (a folder or repo id) in another tool's layout, checked against the original."""
    from hubkit.export import export_reference  # lazy: torch stays out of --help

    report = export_reference(checkpoint, out, **options)
    click.echo("\n".join([report.summary(), *(f"  {note}" for note in report.notes)]))
