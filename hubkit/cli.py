"""The `hubkit` command line (click). Each command is a thin shell over a library function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from hubkit.cli_options import HubkitGroup, av_options, check_out, engine_option, load_options


@click.group(cls=HubkitGroup)
@click.option("-v", "--verbose", count=True, help="-v for info logs, -vv for debug.")
@click.version_option(package_name="hubkit")
def main(verbose: int) -> None:
    """Train, evaluate, publish and load Natural Language Autoencoders."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("target")
@click.option("--base-model", default=None, help="Base model to measure the injection scale against.")
@click.option("--revision", default=None)
@click.option("--subfolder", default=None)
def check(target: str, base_model: str | None, revision: str | None, subfolder: str | None) -> None:
    """Lint a base model (registry name or folder) or an NLA checkpoint (folder or repo id)."""
    from hubkit.check import check as run_check

    report = run_check(target, base_model=base_model, revision=revision, subfolder=subfolder)
    click.echo(report.render())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("av")
@click.option("--vectors", "vectors_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSONL output (default: stdout).")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="AV generation batch (default: measured, 32).",
)
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--sample/--greedy", default=False, show_default=True)
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True))
@click.option("--seed", default=None, type=int)
@engine_option
@av_options
@load_options
def explain(
    av,
    vectors_path,
    out,
    batch_size,
    max_new_tokens,
    sample,
    temperature,
    seed,
    engine,
    injection_scale,
    min_new_tokens,
    revision,
    subfolder,
    base_model,
    device,
    dtype,
) -> None:
    """Explain vectors with an AV; one JSON line per vector (text, status, raw)."""
    from hubkit.vectors_io import read_vectors
    from hubkit.verbalizer import ActivationVerbalizer

    check_out(out)
    vectors = read_vectors(vectors_path)
    model = ActivationVerbalizer.from_pretrained(
        av,
        revision=revision,
        subfolder=subfolder,
        base_model=base_model,
        device=device,
        dtype=dtype,
        injection_scale=injection_scale,
    )
    results = model.explain_detailed(
        vectors,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=sample,
        temperature=temperature,
        seed=seed,
        progress=True,
        engine=engine,
    )
    lines = [
        json.dumps({"text": e.text, "status": e.status, "raw": e.raw}, ensure_ascii=False) for e in results
    ]
    _emit(lines, out)


@main.command()
@click.argument("ar")
@click.option(
    "--texts",
    "texts_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A .txt (one explanation per line) or .jsonl (a `text` field) file.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .safetensors file.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@load_options
def reconstruct(ar, texts_path, out, batch_size, revision, subfolder, base_model, device, dtype) -> None:
    """Reconstruct vectors from explanation texts with an AR."""
    from hubkit.errors import DataError
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.vectors_io import read_texts, write_vectors

    check_out(out)
    texts = read_texts(texts_path)
    model = ActivationReconstructor.from_pretrained(
        ar, revision=revision, subfolder=subfolder, base_model=base_model, device=device, dtype=dtype
    )
    try:
        v = model.reconstruct(texts, batch_size=batch_size, progress=True)
    except DataError as exc:
        raise DataError(f"--texts {texts_path}: {exc}") from exc
    write_vectors(out, v)
    click.echo(f"wrote {tuple(v.shape)} to {out}")


@main.command("round-trip")
@click.option("--av", required=True)
@click.option("--ar", required=True)
@click.option("--vectors", "vectors_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSONL output (default: stdout).")
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="AV generation batch (default: measured, 32).",
)
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(min=1))
@engine_option
@av_options
@load_options
def round_trip(
    av,
    ar,
    vectors_path,
    out,
    batch_size,
    max_new_tokens,
    engine,
    injection_scale,
    min_new_tokens,
    revision,
    subfolder,
    base_model,
    device,
    dtype,
) -> None:
    """v → AV → text → AR → v̂, with per-row cosine and normalised MSE."""
    from hubkit.pair import NLAPair
    from hubkit.vectors_io import read_vectors

    check_out(out)
    vectors = read_vectors(vectors_path)
    pair = NLAPair.from_pretrained(
        av=av,
        ar=ar,
        base_model=base_model,
        revision=revision,
        subfolder=subfolder,
        device=device,
        dtype=dtype,
        injection_scale=injection_scale,
    )
    res = pair.round_trip(
        vectors,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        progress=True,
        engine=engine,
    )
    lines = [
        json.dumps(
            {"text": d.text, "status": d.status, "cos": round(float(c), 6), "mse": round(float(m), 6)},
            ensure_ascii=False,
        )
        for d, c, m in zip(res.details, res.cos, res.mse)
    ]
    _emit(lines, out)
    click.echo(f"mean cos {res.mean_cos:.4f} over {len(lines)} vectors", err=True)


def _emit(lines: list[str], out: str | None) -> None:
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
        click.echo(f"wrote {len(lines)} rows to {out}", err=True)
    else:
        click.echo("\n".join(lines))


@main.group()
def models() -> None:
    """Offline default models installed from PyPI."""


@models.command("list")
def models_list() -> None:
    from hubkit import models as m

    for row in m.list_models():
        click.echo("  ".join(f"{k}={v}" for k, v in row.items()))


@models.command("prepare")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild the cached bf16 copy.")
def models_prepare(names: tuple[str, ...], force: bool) -> None:
    """Convert the packaged GGUF into a cached bf16 safetensors folder (once)."""
    from hubkit import models as m

    for name in names or (m.DEFAULT_MODEL,):
        click.echo(f"{name}: {m.prepare(name, force=force, progress=click.echo)}")


@main.group()
def hub() -> None:
    """The local Hub endpoint."""


@hub.command("serve")
@click.option("--root", required=True, type=click.Path(file_okay=False), help="Where repos are stored.")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address (plain HTTP).")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0: any free port."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML `tokens: {TOKEN: {user: NAME, write: true|false, orgs: [...]}}`. "
    "Default: one write token for the local user in ROOT/access-tokens.yaml (created 0600).",
)
@click.option(
    "--max-body-mb",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Largest JSON or commit request body.",
)
@click.option(
    "--max-upload-mb",
    type=click.IntRange(min=1),
    default=64 * 1024,
    show_default=True,
    help="Largest LFS object.",
)
@click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True)
def hub_serve(
    root: str,
    host: str,
    port: int,
    token_file: str | None,
    max_body_mb: int,
    max_upload_mb: int,
    max_connections: int,
) -> None:
    """Serve the Hub HTTP API from ROOT until interrupted (Ctrl-C)."""
    from hubkit.localhub import Limits, LocalHub

    limits = Limits(
        max_body=max_body_mb << 20, max_upload=max_upload_mb << 20, max_connections=max_connections
    )
    server = LocalHub(Path(root), host=host, port=port, token_file=token_file, limits=limits)
    server.start()
    tokens = token_file or server.local_token_path
    click.echo(
        f"local Hub at {server.endpoint} (root {root}); tokens in {tokens}; "
        f"set HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1 and HF_TOKEN to a token from that file"
    )
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _register() -> None:
    """Commands that live beside the code they drive (one direction of imports: cli imports them)."""
    from hubkit.data.commands import DATA_COMMANDS
    from hubkit.demo.command import demo_command
    from hubkit.eval_cli import eval_command
    from hubkit.export.command import export_command
    from hubkit.inspection.command import inspect_command
    from hubkit.release.commands import release_command
    from hubkit.train.commands import train

    for command in DATA_COMMANDS:
        main.add_command(command)
    main.add_command(demo_command)
    main.add_command(eval_command)
    main.add_command(export_command)
    main.add_command(inspect_command)
    main.add_command(release_command)
    main.add_command(train)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
