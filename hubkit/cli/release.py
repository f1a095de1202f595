"""`hubkit release NAME` (build, and with --push publish) and `hubkit release init NAME` (write a spec)."""

from __future__ import annotations

from pathlib import Path

import click

from hubkit.cli.options import HubkitGroup, out_dir_option
from hubkit.hub.redaction import protect
from hubkit.release.spec import KINDS, load_spec

DEFAULT_OUT = Path("dist")
_RELEASES_DIR = click.Path(file_okay=False)


class _ReleaseGroup(HubkitGroup):
    """`release NAME …` builds a release (the `build` subcommand); `release init NAME …` writes a spec."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


@click.group("release", cls=_ReleaseGroup)
def release() -> None:
    """Publish NLAs: `hubkit release NAME [--dry-run|--push]` bundles releases/NAME.yaml (the `build`
    subcommand); `hubkit release init NAME --kind … --run RUN` writes that spec from a run."""


@release.command("build")
@click.argument("name")
@out_dir_option("Bundle folder (default: dist/NAME). Replaced whole on every build.")
@click.option("--push", is_flag=True, help="Push the bundle: one commit per repo, then the tag, then verify.")
@click.option("--dry-run", is_flag=True, help="Build, then print repos, files, sizes and tags; send nothing.")
@click.option(
    "--cards",
    "cards_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of card templates searched before the defaults (model.md.j2, trajectory.md.j2, dataset.md.j2).",
)
@click.option("--endpoint", default=None, help="Hub endpoint (default: huggingface_hub's, i.e. HF_ENDPOINT or the Hub).")
@click.option(
    "--token",
    default=None,
    envvar="HF_TOKEN",
    show_envvar=True,
    help="Hub token with write access (default: $HF_TOKEN, else the saved login). Never printed or written.",
)
@click.option("--legacy-pt", is_flag=True, help="Also write the AR head as linear_head.pt (tensors only) for old tools.")
@click.option("--releases-dir", default=None, type=_RELEASES_DIR, help="Where NAME.yaml is looked up (default: ./releases).")
@click.option("--no-verify", is_flag=True, help="Skip the post-push sha256 check of the remote files.")
def build(
    name: str, out_dir: str | None, push: bool, dry_run: bool, cards_dir: str | None, endpoint: str | None,
    token: str | None, legacy_pt: bool, releases_dir: str | None, no_verify: bool,
) -> None:
    """Check and bundle release NAME (releases/NAME.yaml); with --push, publish it to the Hub."""
    # lazy: bundling reads eval.json through eval's dataclasses, which import torch; --help stays light
    from hubkit.release.bundle import build_bundle
    from hubkit.release.push import plan_text, push_bundle, summary_text  # lazy: same reason

    protect(token)  # masked in every error and log line from here on
    spec = load_spec(name, releases_dir)
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT / spec.name
    bundle = build_bundle(spec, out, cards_dir=cards_dir, legacy_pt=legacy_pt)
    click.echo(f"bundle: {out} ({', '.join(t.repo_id for t in bundle.targets)})")
    if dry_run:
        click.echo(plan_text(bundle))
    elif not push:
        click.echo("not pushed: add --push to publish, or --dry-run to list what would be sent")
    else:
        click.echo(summary_text(push_bundle(bundle, endpoint=endpoint, token=token, verify=not no_verify)))


@release.command("init")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="The training run folder.")
@click.option(
    "--eval",
    "eval_path",
    default=None,
    type=click.Path(),
    help="The eval.json (or its folder) whose numbers the card cites; its checkpoints are the ones released.",
)
@click.option("--repo", default=None, help="ORG/NAME of the repo (a pair gets ORG/NAME-av and ORG/NAME-ar).")
@click.option("--releases-dir", default=None, type=_RELEASES_DIR, help="Default: ./releases.")
@click.option("--force", is_flag=True, help="Replace an existing spec of that name.")
def init(
    name: str, kind: str, run_dir: str, eval_path: str | None, repo: str | None, releases_dir: str | None, force: bool
) -> None:
    """Write releases/NAME.yaml from what RUN and its eval know; the card's prose is left as placeholders."""
    from hubkit.release.init_spec import init_spec  # lazy: it reads eval.json (torch-backed records)

    path = init_spec(name, kind, run_dir, eval_path, repo, releases_dir, force)
    click.echo(f"wrote {path}: write the `<<fill in: …>>` values, then `hubkit release {name} --dry-run`")
