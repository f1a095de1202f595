"""`hubkit models list|prepare`: the offline default models installed from PyPI."""

from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Offline default models installed from PyPI."""


@models.command("list")
def models_list() -> None:
    from hubkit import models as registry  # lazy: torch stays out of --help

    for row in registry.list_models():
        click.echo("  ".join(f"{k}={v}" for k, v in row.items()))


@models.command("prepare")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild the cached bf16 copy.")
def models_prepare(names: tuple[str, ...], force: bool) -> None:
    """Convert the packaged GGUF into a cached bf16 safetensors folder (once)."""
    from hubkit import models as registry  # lazy: torch stays out of --help

    for name in names or (registry.DEFAULT_MODEL,):
        click.echo(f"{name}: {registry.prepare(name, force=force, progress=click.echo)}")
