"""`hubkit inspect`: read a model with an NLA, token by token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hubkit.cli.options import generation_options, load_options, out_dir_option, pop_load
from hubkit.errors import DataError
from hubkit.vectors_io import read_text_file

_FILE = click.Path(exists=True, dir_okay=False)


@click.command("inspect")
@click.option("--av", required=True, help="AV checkpoint (folder or Hub repo id).")
@click.option("--ar", required=True, help="AR checkpoint (folder or Hub repo id).")
@click.option("--text", default=None, help="The text to inspect.")
@click.option("--file", "file_path", default=None, type=_FILE, help="A UTF-8 text file.")
@click.option(
    "--chat",
    "chat_path",
    default=None,
    type=_FILE,
    help='A JSON list of {"role": ..., "content": ...} messages, put through the base\'s chat template.',
)
@click.option(
    "--reply",
    "reply_tokens",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Append the base's greedy reply of up to N tokens.",
)
@click.option("--positions", default="all", show_default=True, help="all, prompt, reply, last, or I,J,K (negative from the end).")
@out_dir_option("Output folder.", required=True)
@click.option(
    "--spliced-loss",
    is_flag=True,
    help="Also measure the spliced loss at each position (one forward per position: slow on long texts).",
)
@click.option("--baseline-b", default=None, type=float, help="The training distribution's predict-the-mean B.")
@click.option(
    "--baseline-eval", default=None, type=_FILE, help="Read B from this eval.json (figures.round_trip.all.fve.baseline_b)."
)
@generation_options(None, "AV generation batch.")
@load_options
def inspect(
    av: str, ar: str, text: str | None, file_path: str | None, chat_path: str | None, out_dir: str,
    baseline_b: float | None, baseline_eval: str | None, injection_scale: str | None, **options: Any,
) -> None:
    """Read a model with an NLA: the vector, explanation and round trip of every token of a text or chat.

    Writes OUT/tokens.jsonl, vectors.safetensors, transcript.txt, index.html and inspect.json."""
    from hubkit.inspection import baseline  # lazy: torch stays out of --help
    from hubkit.inspection.source import read_chat  # lazy: torch stays out of --help
    from hubkit.pair import NLAPair  # lazy: torch stays out of --help

    if sum(v is not None for v in (text, file_path, chat_path)) != 1:
        raise click.UsageError("give exactly one of --text, --file and --chat")
    if baseline_b is not None and baseline_eval is not None:
        raise click.UsageError("give --baseline-b or --baseline-eval, not both")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; name a folder")
    chat = read_chat(chat_path) if chat_path else None
    if file_path:
        text = read_text_file(file_path)
        if not text.strip():
            raise DataError(f"{file_path}: the file to inspect is empty; give a file with some text in it")
    elif text is not None and not text.strip():
        raise DataError("--text is empty; give a text with at least one word")
    source = None
    if baseline_eval:
        baseline_b, source = baseline.from_eval_json(baseline_eval), f"recorded in {baseline_eval}"
    elif baseline_b is not None:
        baseline_b, source = baseline.check_b(baseline_b, "--baseline-b"), "given with --baseline-b"
    load = pop_load(options)
    pair = NLAPair.from_pretrained(av, ar, injection_scale=injection_scale, **load)
    ins = pair.inspect(
        text, chat=chat, base_model=load["base_model"], baseline_b=baseline_b, baseline_source=source, **options
    )
    ins.info["av"], ins.info["ar"] = av, ar
    ins.save(out)
    s = ins.summary()
    fve = f", mean fve_nrm {s['mean_fve_nrm']:.4f}" if s["mean_fve_nrm"] is not None else ""
    click.echo(f"{s['positions']} of {s['n_tokens']} tokens: mean cos {s['mean_cos']:.4f}{fve} (B: {s['baseline_source']})")
    if ins.spliced is not None and ins.spliced.frac_recovered is not None:
        click.echo(f"spliced loss: fraction of loss recovered {ins.spliced.frac_recovered:.4f}")
    click.echo(f"wrote {out}/tokens.jsonl, vectors.safetensors, transcript.txt, index.html")
