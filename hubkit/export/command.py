"""`hubkit export`: the click command (registered by `hubkit.cli`)."""

from __future__ import annotations

import click

from hubkit.cli_options import fail
from hubkit.export import FORMATS


@click.command("export")
@click.argument("checkpoint")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="reference",
    show_default=True,
    help="reference: the reference implementation's layout (full AV weights; truncated AR + value head).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new or empty folder.")
@click.option(
    "--base-model", default=None, help="Base weights for an adapter whose meta names none (or a local copy)."
)
@click.option(
    "--dtype",
    default=None,
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="Merge dtype (default: the training dtype the meta records, else float32).",
)
@click.option("--revision", default=None)
@click.option("--subfolder", default=None)
def export_command(checkpoint, fmt, out, base_model, dtype, revision, subfolder) -> None:
    """Write CHECKPOINT (a folder or repo id) in another tool's layout, checked against the original."""
    from hubkit.errors import HubkitError
    from hubkit.export import export_reference

    try:
        report = export_reference(
            checkpoint, out, base_model=base_model, dtype=dtype, revision=revision, subfolder=subfolder
        )
    except HubkitError as exc:
        fail(str(exc))
    click.echo(report.summary())
    for note in report.notes:
        click.echo(f"  {note}")
