"""`hubkit hub serve`: the local Hub endpoint."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import click

from hubkit.localhub import Limits, LocalHub

_MB = click.IntRange(min=1)


@click.group()
def hub() -> None:
    """The local Hub endpoint."""


@hub.command("serve")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Where repos are stored.")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address (plain HTTP).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML `tokens: {TOKEN: {user: NAME, write: true|false, orgs: [...]}}`. "
    "Default: one write token for the local user in ROOT/access-tokens.yaml (created 0600).",
)
@click.option("--max-body-mb", type=_MB, default=256, show_default=True, help="Largest JSON or commit request body.")
@click.option("--max-upload-mb", type=_MB, default=64 * 1024, show_default=True, help="Largest LFS object.")
@click.option("--max-connections", type=_MB, default=256, show_default=True)
def serve(
    root: str, host: str, port: int, token_file: str | None, max_body_mb: int, max_upload_mb: int, max_connections: int
) -> None:
    """Serve the Hub HTTP API from ROOT until interrupted (Ctrl-C)."""
    limits = Limits(max_body=max_body_mb << 20, max_upload=max_upload_mb << 20, max_connections=max_connections)
    with LocalHub(Path(root), host=host, port=port, token_file=token_file, limits=limits) as server:
        click.echo(
            f"local Hub at {server.endpoint} (root {root}); "
            f"tokens in {token_file or server.local_token_path}; "
            f"set HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1 and HF_TOKEN to a token from that file"
        )
        with suppress(KeyboardInterrupt):
            server.wait()
