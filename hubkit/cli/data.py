"""`hubkit extract`, `split`, `label` and `build`: the data stages 0-3."""

from __future__ import annotations

import os
from typing import Any

import click

from hubkit import processes
from hubkit.cli.options import out_dir_option, overwrite_option, threads_option
from hubkit.data.corpus import load_corpus
from hubkit.data.labeler_registry import LabelerOptions, choice_help, make_pair
from hubkit.data.outputs import check_table_output
from hubkit.data.sidecar import read_sidecar
from hubkit.data.split import parse_fractions, split_table
from hubkit.errors import DataError
from hubkit.identity import hub_id
from hubkit.precision import DTYPE_CHOICES

_IN = click.option("--in", "source", required=True, type=click.Path(exists=True, dir_okay=False))
_N = click.IntRange(min=1)


def _parquet_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A table path must end in .parquet: another suffix is almost always a mistaken argument."""
    if value is not None and not str(value).endswith(".parquet"):
        raise click.BadParameter(f"{value}: tables are parquet files; name it *.parquet", param=param)
    return value


def _on_chunk(i: int, rows: int) -> None:
    click.echo(f"chunk {i + 1}: {rows} rows", err=True)


@click.command("extract")
@click.option("--out", required=True, type=click.Path(dir_okay=False), callback=_parquet_path,
              help="Activations table to write (.parquet).")
@click.option("--model", "model_name", default="smollm2-135m", show_default=True,
              help="Base model: offline registry name, local folder or Hub id.")
@click.option("--revision", default=None, help="Branch, tag or commit of a Hub model.")
@click.option("--corpus", default="bundled", show_default=True,
              help="bundled, a .txt/.jsonl/.parquet file or folder, a saved dataset, or a datasets id.")
@click.option("--text-field", default="text", show_default=True)
@click.option("--id-field", default=None, help="Field holding document ids (default: a hash of the text).")
@click.option("--split", "hf_split", default="train", show_default=True, help="Split of a datasets corpus.")
@click.option("--limit-docs", type=_N, default=None, help="Use only the first N documents.")
@click.option("--layer", type=int, default=None, help="Read the output of block L (default: two thirds deep).")
@click.option("--positions-per-doc", type=_N, default=8, show_default=True)
@click.option("--min-position", type=int, default=8, show_default=True, help="Skip the first positions (BOS = 0).")
@click.option("--max-length", type=int, default=128, show_default=True, help="Tokens per document, BOS included.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=_N, default=8, show_default=True)
@click.option("--docs-per-chunk", type=_N, default=64, show_default=True, help="Resume granularity.")
@click.option("--bos/--no-bos", "add_bos", default=True, show_default=True,
              help="Put the tokenizer's BOS token before each document (recorded in the sidecar).")
@click.option("--strict/--skip-short", default=False, show_default=True,
              help="Fail on a document too short for --min-position instead of skipping it.")
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True,
              help="auto: bfloat16 where the hardware runs it natively (GPU, CPU with AVX512-BF16/AMX), else float32.")
@click.option("--device", default="cpu", show_default=True)
@threads_option
@overwrite_option
def extract(
    out: str, model_name: str, revision: str | None, corpus: str, text_field: str, id_field: str | None,
    hf_split: str, limit_docs: int | None, layer: int | None, strict: bool, dtype: str, device: str,
    threads: int | None, overwrite: bool, **config: Any,
) -> None:
    """Stage 0: residual vectors at one layer for sampled positions of a corpus (resumable)."""
    from hubkit import arch  # lazy: torch stays out of --help
    from hubkit.data.extract import ExtractConfig, default_layer, load_base, set_threads  # lazy: torch
    from hubkit.data.extract import extract as run_extract  # lazy: torch stays out of --help

    check_table_output(out, overwrite)  # before the model loads: a refusal costs nothing
    n_threads = set_threads(threads)
    docs = load_corpus(corpus, text_field=text_field, id_field=id_field, split=hf_split, limit=limit_docs)
    model, tok = load_base(model_name, revision, dtype, device)
    loaded = str(next(model.parameters()).dtype).removeprefix("torch.")
    click.echo(f"dtype {loaded} (--dtype {dtype}), {n_threads} torch threads", err=True)
    layer = default_layer(arch.num_layers(model)) if layer is None else layer
    settings = ExtractConfig(layer=layer, skip_short=not strict, **config)
    path = run_extract(docs, model, tok, out, settings, base_model=hub_id(model_name), revision=revision,
                       overwrite=overwrite, on_chunk=_on_chunk)
    if processes.is_main():
        click.echo(f"wrote {read_sidecar(path).rows} rows (layer {layer}) to {path}")


@click.command("split")
@_IN
@out_dir_option(None, required=True)
@click.option("--fractions", default="av_sft=0.4,ar_sft=0.4,rl=0.1,eval=0.1", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace split tables there that hubkit did not write.")
def split(source: str, out_dir: str, fractions: str, seed: int, overwrite: bool) -> None:
    """Stage 1: split an activations table by document into av_sft / ar_sft / rl / eval."""
    for name, path in split_table(source, out_dir, parse_fractions(fractions), seed, overwrite).items():
        side = read_sidecar(path)
        click.echo(f"{name}: {side.rows} rows, {len(side.split.doc_ids[name])} documents → {path}")


@click.command("label")
@_IN
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--labeler", "--backend", "backend", default="transformers", show_default=True,
              help="Labeler backend, NAME or NAME:ARG. " + choice_help())
@click.option("--model", default=None,
              help="transformers: registry name or folder (default: the offline default model); openai: model id.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the API key (never passed on the command line).")
@click.option("--auditor-model", default=None, help="Auditor model (default: the labeler itself).")
@click.option("--auditor-base-url", default=None, help="Auditor endpoint (default: the labeler's).")
@click.option("--rows-per-chunk", type=_N, default=64, show_default=True, help="Resume granularity.")
@click.option("--batch-size", type=_N, default=8, show_default=True, help="transformers: generation batch.")
@click.option("--max-tokens", type=click.IntRange(1, 100_000), default=128, show_default=True)
@click.option("--rps", "requests_per_second", type=click.FloatRange(min=0, min_open=True), default=None,
              help="openai: at most this many requests per second.")
@click.option("--concurrency", type=_N, default=4, show_default=True, help="openai: requests in flight.")
@click.option("--max-retries", type=click.IntRange(0, 100), default=5, show_default=True)
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), default=None,
              help="Label cache (SQLite; default: labels.sqlite in the hubkit cache).")
@click.option("--no-cache", is_flag=True)
@click.option("--device", default="cpu", show_default=True)
@threads_option
@overwrite_option
def label(
    source: str, out: str, backend: str, api_key_env: str, auditor_model: str | None, auditor_base_url: str | None,
    rows_per_chunk: int, cache_path: str | None, no_cache: bool, device: str, threads: int | None,
    overwrite: bool, **options: Any,
) -> None:
    """Stage 2: explain each row's prefix with a labeler (LLM backends: audited by an auditor; resumable, cached)."""
    from hubkit.data.extract import set_threads  # lazy: torch stays out of --help
    from hubkit.data.label import LabelCache, label_table  # lazy: torch stays out of --help

    set_threads(threads)
    settings = LabelerOptions(api_key=os.environ.get(api_key_env), device=processes.local_device(device), **options)
    try:
        labeler, auditor = make_pair(backend, settings, auditor_model, auditor_base_url)
    except DataError as exc:  # a choice or option the backend cannot take: a usage error (exit 2)
        raise click.UsageError(str(exc)) from exc
    cache = None if no_cache else LabelCache(cache_path or LabelCache.default_path())
    path = label_table(source, out, labeler, auditor, rows_per_chunk=rows_per_chunk, cache=cache,
                       overwrite=overwrite, on_chunk=_on_chunk)
    counts = read_sidecar(path).labeling.status_counts
    if processes.is_main():
        click.echo(f"labeled {sum(counts.values())} rows ({counts}) → {path}")


@click.command("build")
@click.option("--splits", "splits_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--labeled", "labeled_dir", required=True, type=click.Path(exists=True, file_okay=False))
@out_dir_option(None, required=True)
@click.option("--overwrite", is_flag=True, help="Replace tables there that hubkit did not write.")
def build(splits_dir: str, labeled_dir: str, out_dir: str, overwrite: bool) -> None:
    """Stage 3: the AV SFT, AR SFT, RL and eval tables, with sidecars."""
    from hubkit.data.build import build_from_dirs  # lazy: torch stays out of --help

    for name, path in build_from_dirs(splits_dir, labeled_dir, out_dir, overwrite).items():
        click.echo(f"{name}: {read_sidecar(path).rows} rows → {path}")


COMMANDS = (extract, split, label, build)
