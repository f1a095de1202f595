"""Click commands for stages 0-3: ``hubkit extract``, ``split``, ``label`` and ``build``.

Register them on the CLI group with ``for cmd in DATA_COMMANDS: main.add_command(cmd)``.
"""

from __future__ import annotations

import click

from hubkit.data.labeler_registry import choice_help
from hubkit.precision import DTYPE_CHOICES


def _set_threads(threads: int | None) -> int:
    """Torch threads: `threads` when given, else hubkit's policy (physical cores available, shared by the
    processes a launcher started on this node)."""
    import os

    from hubkit.precision import apply_thread_policy_unless_set

    if threads:
        import torch

        torch.set_num_threads(threads)
        return threads
    return apply_thread_policy_unless_set(workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _load_base(name: str, revision: str | None, dtype: str, device: str):
    """(model, tokenizer): an offline registry model or local folder via hubkit.models, else transformers.

    `dtype` may be ``auto`` (bfloat16 where the hardware runs it natively, else float32)."""
    from hubkit import models, processes
    from hubkit.precision import check_device, resolve_dtype

    device = processes.local_device(device)
    check_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if revision is None:
        return models.load(name, dtype=torch_dtype, device=device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=torch_dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name, revision=revision)


def _base_name(name: str) -> str:
    """What the sidecar calls the base: the Hub id a registry model stands in for, else the name given."""
    from hubkit.identity import hub_id

    return hub_id(name)


def _parquet_path(value: str, param: click.Parameter) -> str:
    """A table path must end in .parquet: another suffix is almost always a mistaken argument."""
    if value is not None and not str(value).endswith(".parquet"):
        raise click.BadParameter(f"{value}: tables are parquet files; name it *.parquet", param=param)
    return value


@click.command("extract")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    callback=lambda ctx, param, value: _parquet_path(value, param),
    help="Activations table to write (.parquet).",
)
@click.option(
    "--model",
    "model_name",
    default="smollm2-135m",
    show_default=True,
    help="Base model: offline registry name, local folder or Hub id.",
)
@click.option("--revision", default=None, help="Branch, tag or commit of a Hub model.")
@click.option(
    "--corpus",
    default="bundled",
    show_default=True,
    help="bundled, a .txt/.jsonl/.parquet file or folder, a saved dataset, or a datasets id.",
)
@click.option("--text-field", default="text", show_default=True)
@click.option("--id-field", default=None, help="Field holding document ids (default: a hash of the text).")
@click.option("--split", "hf_split", default="train", show_default=True, help="Split of a datasets corpus.")
@click.option(
    "--limit-docs", type=click.IntRange(min=1), default=None, help="Use only the first N documents."
)
@click.option(
    "--layer", type=int, default=None, help="Read the output of block L (default: two thirds deep)."
)
@click.option("--positions-per-doc", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--min-position", type=int, default=8, show_default=True, help="Skip the first positions (BOS = 0)."
)
@click.option(
    "--max-length", type=int, default=128, show_default=True, help="Tokens per document, BOS included."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--docs-per-chunk", type=click.IntRange(min=1), default=64, show_default=True, help="Resume granularity."
)
@click.option(
    "--bos/--no-bos",
    default=True,
    show_default=True,
    help="Put the tokenizer's BOS token before each document (recorded in the sidecar).",
)
@click.option(
    "--strict/--skip-short",
    default=False,
    show_default=True,
    help="Fail on a document too short for --min-position instead of skipping it.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPE_CHOICES),
    default="auto",
    show_default=True,
    help="auto: bfloat16 where the hardware runs it natively (GPU, CPU with AVX512-BF16/AMX), else float32.",
)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=None,
    help="CPU threads for torch (default: the physical cores available).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing table and any partial run.")
def extract_cmd(
    out,
    model_name,
    revision,
    corpus,
    text_field,
    id_field,
    hf_split,
    limit_docs,
    layer,
    positions_per_doc,
    min_position,
    max_length,
    seed,
    batch_size,
    docs_per_chunk,
    bos,
    strict,
    dtype,
    device,
    threads,
    overwrite,
) -> None:
    """Stage 0: residual vectors at one layer for sampled positions of a corpus (resumable)."""
    from hubkit import arch
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, default_layer, extract
    from hubkit.data.outputs import check_table_output

    check_table_output(out, overwrite)  # before the model loads: a refusal costs nothing
    n_threads = _set_threads(threads)
    docs = load_corpus(corpus, text_field=text_field, id_field=id_field, split=hf_split, limit=limit_docs)
    model, tok = _load_base(model_name, revision, dtype, device)
    click.echo(
        f"dtype {str(next(model.parameters()).dtype).removeprefix('torch.')} (--dtype {dtype}), {n_threads} torch threads",
        err=True,
    )
    if layer is None:
        layer = default_layer(arch.num_layers(model))
    config = ExtractConfig(
        layer=layer,
        positions_per_doc=positions_per_doc,
        min_position=min_position,
        max_length=max_length,
        seed=seed,
        batch_size=batch_size,
        docs_per_chunk=docs_per_chunk,
        add_bos=bos,
        skip_short=not strict,
    )
    path = extract(
        docs,
        model,
        tok,
        out,
        config,
        base_model=_base_name(model_name),
        revision=revision,
        overwrite=overwrite,
        on_chunk=lambda i, rows: click.echo(f"chunk {i + 1}: {rows} rows", err=True),
    )
    from hubkit import processes
    from hubkit.data.sidecar import read_sidecar

    if processes.is_main():
        click.echo(f"wrote {read_sidecar(path).rows} rows (layer {layer}) to {path}")


@click.command("split")
@click.option("--in", "source", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--fractions", default="av_sft=0.4,ar_sft=0.4,rl=0.1,eval=0.1", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace split tables there that hubkit did not write.")
def split_cmd(source, out_dir, fractions, seed, overwrite) -> None:
    """Stage 1: split an activations table by document into av_sft / ar_sft / rl / eval."""
    from hubkit.data.sidecar import read_sidecar
    from hubkit.data.split import parse_fractions, split_table

    for name, path in split_table(source, out_dir, parse_fractions(fractions), seed, overwrite).items():
        side = read_sidecar(path)
        click.echo(f"{name}: {side.rows} rows, {len(side.split.doc_ids[name])} documents → {path}")


@click.command("label")
@click.option("--in", "source", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--labeler",
    "--backend",
    "backend",
    default="transformers",
    show_default=True,
    help="Labeler backend, NAME or NAME:ARG. " + choice_help(),
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="transformers: registry name or folder (default: the offline default model); openai: model id.",
)
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the API key (never passed on the command line).",
)
@click.option("--auditor-model", default=None, help="Auditor model (default: the labeler itself).")
@click.option("--auditor-base-url", default=None, help="Auditor endpoint (default: the labeler's).")
@click.option(
    "--rows-per-chunk", type=click.IntRange(min=1), default=64, show_default=True, help="Resume granularity."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="transformers: generation batch.",
)
@click.option("--max-tokens", type=click.IntRange(1, 100_000), default=128, show_default=True)
@click.option(
    "--rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="openai: at most this many requests per second.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="openai: requests in flight.",
)
@click.option("--max-retries", type=click.IntRange(0, 100), default=5, show_default=True)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Label cache (SQLite; default: labels.sqlite in the hubkit cache).",
)
@click.option("--no-cache", is_flag=True)
@click.option("--device", default="cpu", show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=None,
    help="CPU threads for torch (default: the physical cores available).",
)
@click.option("--overwrite", is_flag=True)
def label_cmd(
    source,
    out,
    backend,
    model_name,
    base_url,
    api_key_env,
    auditor_model,
    auditor_base_url,
    rows_per_chunk,
    batch_size,
    max_tokens,
    rps,
    concurrency,
    max_retries,
    cache_path,
    no_cache,
    device,
    threads,
    overwrite,
) -> None:
    """Stage 2: explain each row's prefix with a labeler (LLM backends: audited by an auditor; resumable, cached)."""
    import os

    from hubkit import processes
    from hubkit.data.label import LabelCache, label_table
    from hubkit.data.labeler_registry import LabelerOptions, make_pair
    from hubkit.errors import DataError

    _set_threads(threads)
    options = LabelerOptions(
        model=model_name,
        base_url=base_url,
        api_key=os.environ.get(api_key_env),
        max_tokens=max_tokens,
        batch_size=batch_size,
        device=processes.local_device(device),
        requests_per_second=rps,
        concurrency=concurrency,
        max_retries=max_retries,
    )
    try:
        labeler, auditor = make_pair(backend, options, auditor_model, auditor_base_url)
    except DataError as exc:  # a choice or option the backend cannot take: a usage error (exit 2)
        raise click.UsageError(str(exc)) from exc
    cache = None if no_cache else LabelCache(cache_path or LabelCache.default_path())
    path = label_table(
        source,
        out,
        labeler,
        auditor,
        rows_per_chunk=rows_per_chunk,
        cache=cache,
        overwrite=overwrite,
        on_chunk=lambda i, rows: click.echo(f"chunk {i + 1}: {rows} rows", err=True),
    )
    from hubkit.data.sidecar import read_sidecar

    counts = read_sidecar(path).labeling.status_counts
    if processes.is_main():
        click.echo(f"labeled {sum(counts.values())} rows ({counts}) → {path}")


@click.command("build")
@click.option("--splits", "splits_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--labeled", "labeled_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace tables there that hubkit did not write.")
def build_cmd(splits_dir, labeled_dir, out_dir, overwrite) -> None:
    """Stage 3: the AV SFT, AR SFT, RL and eval tables, with sidecars."""
    from hubkit.data.build import build_from_dirs
    from hubkit.data.sidecar import read_sidecar

    for name, path in build_from_dirs(splits_dir, labeled_dir, out_dir, overwrite).items():
        click.echo(f"{name}: {read_sidecar(path).rows} rows → {path}")


DATA_COMMANDS = (extract_cmd, split_cmd, label_cmd, build_cmd)
