"""`hubkit explain`, `reconstruct` and `round-trip`: vectors to explanations and back with a published NLA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hubkit.cli.options import check_out, generation_options, load_options, pop_load
from hubkit.errors import DataError
from hubkit.vectors_io import read_texts, read_vectors, write_vectors

_vectors = click.option("--vectors", "vectors_path", required=True, type=click.Path(exists=True, dir_okay=False))
_jsonl_out = click.option("--out", type=click.Path(dir_okay=False), default=None, help="JSONL output (default: stdout).")
_generation = generation_options(None, "AV generation batch (default: measured, 32).")


@click.command()
@click.argument("av")
@_vectors
@_jsonl_out
@_generation
@click.option("--sample/--greedy", "do_sample", default=False, show_default=True)
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True))
@click.option("--seed", default=None, type=int)
@load_options
def explain(av: str, vectors_path: str, out: str | None, injection_scale: str | None, **opts: Any) -> None:
    """Explain vectors with an AV; one JSON line per vector (text, status, raw)."""
    from hubkit.verbalizer import ActivationVerbalizer  # lazy: torch stays out of --help

    check_out(out)
    vectors = read_vectors(vectors_path)
    model = ActivationVerbalizer.from_pretrained(av, **pop_load(opts), injection_scale=injection_scale)
    results = model.explain_detailed(vectors, progress=True, **opts)
    _emit([{"text": e.text, "status": e.status, "raw": e.raw} for e in results], out)


@click.command()
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
def reconstruct(ar: str, texts_path: str, out: str, batch_size: int, **load: Any) -> None:
    """Reconstruct vectors from explanation texts with an AR."""
    from hubkit.reconstructor import ActivationReconstructor  # lazy: torch stays out of --help

    check_out(out)
    texts = read_texts(texts_path)
    model = ActivationReconstructor.from_pretrained(ar, **load)
    try:
        v = model.reconstruct(texts, batch_size=batch_size, progress=True)
    except DataError as exc:
        raise DataError(f"--texts {texts_path}: {exc}") from exc
    write_vectors(out, v)
    click.echo(f"wrote {tuple(v.shape)} to {out}")


@click.command("round-trip")
@click.option("--av", required=True)
@click.option("--ar", required=True)
@_vectors
@_jsonl_out
@_generation
@load_options
def round_trip(
    av: str, ar: str, vectors_path: str, out: str | None, injection_scale: str | None, **opts: Any
) -> None:
    """v → AV → text → AR → v̂, with per-row cosine and normalised MSE."""
    from hubkit.pair import NLAPair  # lazy: torch stays out of --help

    check_out(out)
    vectors = read_vectors(vectors_path)
    pair = NLAPair.from_pretrained(av=av, ar=ar, **pop_load(opts), injection_scale=injection_scale)
    res = pair.round_trip(vectors, progress=True, **opts)
    rows = [
        {"text": d.text, "status": d.status, "cos": round(float(c), 6), "mse": round(float(m), 6)}
        for d, c, m in zip(res.details, res.cos, res.mse)
    ]
    _emit(rows, out)
    click.echo(f"mean cos {res.mean_cos:.4f} over {len(rows)} vectors", err=True)


def _emit(rows: list[dict[str, Any]], out: str | None) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
        click.echo(f"wrote {len(lines)} rows to {out}", err=True)
    else:
        click.echo("\n".join(lines))


COMMANDS = (explain, reconstruct, round_trip)
