"""`hubkit inspect`: the click command (registered by `hubkit.cli`)."""

from __future__ import annotations

from pathlib import Path

import click

from hubkit.cli_options import av_options, engine_option, load_options


def _input_file(flag: str, dest: str, help: str):
    return click.option(flag, dest, default=None, type=click.Path(exists=True, dir_okay=False), help=help)


@click.command("inspect")
@click.option("--av", required=True, help="AV checkpoint (folder or Hub repo id).")
@click.option("--ar", required=True, help="AR checkpoint (folder or Hub repo id).")
@click.option("--text", default=None, help="The text to inspect.")
@_input_file("--file", "file_path", "A UTF-8 text file.")
@_input_file(
    "--chat",
    "chat_path",
    'A JSON list of {"role": ..., "content": ...} messages, put through the base\'s chat template.',
)
@click.option(
    "--reply",
    "reply_tokens",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Append the base's greedy reply of up to N tokens.",
)
@click.option(
    "--positions",
    default="all",
    show_default=True,
    help="all, prompt, reply, last, or I,J,K (negative from the end).",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--spliced-loss",
    is_flag=True,
    help="Also measure the spliced loss at each position (one forward per position: slow on long texts).",
)
@click.option(
    "--baseline-b", default=None, type=float, help="The training distribution's predict-the-mean B."
)
@click.option(
    "--baseline-eval",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Read B from this eval.json (figures.round_trip.all.fve.baseline_b).",
)
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="AV generation batch.")
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(min=1))
@engine_option
@av_options
@load_options
def inspect_command(
    av,
    ar,
    text,
    file_path,
    chat_path,
    reply_tokens,
    positions,
    out_dir,
    spliced_loss,
    baseline_b,
    baseline_eval,
    batch_size,
    max_new_tokens,
    **opts,
) -> None:
    """Read a model with an NLA: the vector, explanation and round trip of every token of a text or chat.

    Writes OUT/tokens.jsonl, vectors.safetensors, transcript.txt, index.html and inspect.json."""
    from hubkit.errors import DataError
    from hubkit.inspection import baseline as B
    from hubkit.inspection.source import read_chat
    from hubkit.pair import NLAPair
    from hubkit.vectors_io import read_text_file

    given = [n for n, v in (("--text", text), ("--file", file_path), ("--chat", chat_path)) if v is not None]
    if len(given) != 1:
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
        baseline_b, source = B.from_eval_json(baseline_eval), f"recorded in {baseline_eval}"
    elif baseline_b is not None:
        baseline_b, source = B.check_b(baseline_b, "--baseline-b"), "given with --baseline-b"
    base_model = opts["base_model"]
    load = {k: opts[k] for k in ("revision", "subfolder", "device", "dtype", "injection_scale")}
    pair = NLAPair.from_pretrained(av, ar, base_model, **load)
    baseline = {"baseline_b": baseline_b, "baseline_source": source}
    ins = pair.inspect(
        text,
        chat=chat,
        reply_tokens=reply_tokens,
        positions=positions,
        base_model=base_model,
        spliced_loss=spliced_loss,
        **baseline,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        min_new_tokens=opts["min_new_tokens"],
        engine=opts["engine"],
    )
    ins.info["av"], ins.info["ar"] = av, ar
    ins.save(out)
    s = ins.summary()
    fve = f", mean fve_nrm {s['mean_fve_nrm']:.4f}" if s["mean_fve_nrm"] is not None else ""
    click.echo(
        f"{s['positions']} of {s['n_tokens']} tokens: mean cos {s['mean_cos']:.4f}{fve} (B: {s['baseline_source']})"
    )
    if ins.spliced is not None and ins.spliced.frac_recovered is not None:
        click.echo(f"spliced loss: fraction of loss recovered {ins.spliced.frac_recovered:.4f}")
    click.echo(f"wrote {out}/tokens.jsonl, vectors.safetensors, transcript.txt, index.html")
