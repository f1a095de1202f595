"""`hubkit eval`: click flags → `Generation`, `Extras` and the load options, then one library entry point."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from hubkit.cli.options import engine_option, load_options, out_dir_option, stack

PAIR_ONLY = (
    "paraphrase_endpoint",
    "paraphrase_model",
    "paraphrase_local",
    "claim_ablation",
    "cross_avs",
    "cross_ars",
    "judge_endpoint",
    "judge_model",
    "judge_local",
)

extra_options = stack(
    click.option(
        "--paraphrase-endpoint",
        default=None,
        help="Paraphrase each explanation with this OpenAI-compatible endpoint (…/v1); needs --paraphrase-model.",
    ),
    click.option("--paraphrase-model", default=None, help="Model name to ask at --paraphrase-endpoint."),
    click.option(
        "--paraphrase-local",
        default=None,
        help="Paraphrase with a local transformers model (registry name or folder) instead of an endpoint.",
    ),
    click.option("--claim-ablation", is_flag=True, help="Drop each claim of each explanation in turn."),
    click.option("--max-claims", default=8, show_default=True, help="Claims ablated per row at most."),
    click.option(
        "--cross-av",
        "cross_avs",
        multiple=True,
        help="Another AV for the cross-pair matrix (repeatable); alone with --cross-ar: a cross-pair eval.",
    ),
    click.option(
        "--cross-ar", "cross_ars", multiple=True, help="Another AR for the cross-pair matrix (repeatable)."
    ),
    click.option(
        "--spliced-loss",
        is_flag=True,
        help="Splice each reconstruction (rescaled to the vector's norm) into the base at layer L: "
        "next-token CE vs the original, mean and zero vectors, fraction of loss recovered, KL.",
    ),
    click.option(
        "--judge-endpoint",
        default=None,
        help="Judge each claim of each explanation against the row's prefix with this OpenAI-compatible "
        "endpoint (…/v1); needs --judge-model.",
    ),
    click.option("--judge-model", default=None, help="Model name to ask at --judge-endpoint."),
    click.option(
        "--judge-local", default=None, help="Judge with a local transformers model (registry name or folder)."
    ),
)


@click.command("eval")
@click.option(
    "--av", default=None, help="AV checkpoint (folder or Hub repo id); the fixed AV with --trajectory."
)
@click.option(
    "--ar", default=None, help="AR checkpoint (folder or Hub repo id); the fixed AR with --trajectory."
)
@click.option(
    "--table",
    "table_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Held-out eval table (.parquet: doc_id, position, prefix, vector[, explanation]).",
)
@out_dir_option("Folder for eval.json, rows.parquet and plots/.", required=True)
@click.option(
    "--trajectory",
    "run_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Evaluate every checkpoint in this run folder (step_* folders; av/ and ar/; GRPO steps with ar/).",
)
@click.option(
    "--train-table",
    "train_tables",
    multiple=True,
    type=click.Path(exists=True),
    help="Training table(s) whose doc_ids must not appear in the eval table (repeatable).",
)
@click.option(
    "--force-overlap", is_flag=True, help="Evaluate even if eval documents were trained on (recorded)."
)
@click.option(
    "--sidecar",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="The eval table's JSON sidecar, if not next to it under a usual name.",
)
@click.option(
    "--loss-log",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Loss log for the trend verdict (default: the run's metrics.jsonl, else checkpoint metas).",
)
@click.option(
    "--rows",
    default=None,
    type=click.IntRange(min=1),
    help="Evaluate a seeded sample of this many rows (default: all).",
)
@click.option("--seed", default=0, show_default=True, help="Seed for row sampling, controls and bootstrap.")
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--batch-size", default=16, show_default=True, type=click.IntRange(min=1), help="AV generation batch."
)
@click.option("--ar-batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--sample/--greedy", "do_sample", default=False, show_default=True)
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(min=0, max=1, min_open=True))
@click.option(
    "--n-boot",
    default=2000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Bootstrap resamples for intervals.",
)
@click.option("--no-plots", is_flag=True)
@click.option(
    "--fixed-ar",
    default=None,
    help="A frozen AR (the SFT AR a GRPO run started from) that also reads the AV's explanations: the "
    "honest yardstick beside an AR trained alongside in RL (recorded as figures.fixed_ar).",
)
@engine_option
@extra_options
@load_options
def eval_command(**flags: Any) -> None:
    """Evaluate an NLA pair (or a trajectory) on a held-out table; write eval.json, rows.parquet, plots."""
    # lazy: torch and the models load only when the command runs, never for `hubkit --help`
    from hubkit import hub, processes
    from hubkit.eval import headline  # lazy: as above
    from hubkit.eval.cross_pair_eval import evaluate_cross_pair  # lazy: as above
    from hubkit.eval.extras import Extras  # lazy: as above
    from hubkit.eval.generation import Generation  # lazy: as above
    from hubkit.eval.pair_eval import evaluate_pair  # lazy: as above
    from hubkit.eval.report import base_record, checkpoint_record  # lazy: as above
    from hubkit.eval.table import EvalTable  # lazy: as above
    from hubkit.eval.trajectory import evaluate_trajectory  # lazy: as above
    from hubkit.pair import NLAPair  # lazy: as above

    o = SimpleNamespace(**flags)
    o.device = processes.local_device(o.device)  # under a launcher, `cuda` is each process's own GPU
    if o.run_dir is not None and any(flags[k] for k in PAIR_ONLY):
        raise click.UsageError(
            "paraphrase, claim ablation, cross-pair and judge flags evaluate a pair (--av/--ar), not --trajectory "
            "(--spliced-loss works with both)"
        )
    table = EvalTable.read(o.table_path, sidecar=o.sidecar)
    gen = Generation(**{f.name: flags[f.name] for f in dataclasses.fields(Generation)})
    load = {"base_model": o.base_model, "device": o.device, "dtype": o.dtype}
    common = dict(generation=gen, out_dir=o.out_dir, rows=o.rows, n_boot=o.n_boot, plots=not o.no_plots)
    common |= {"train_tables": o.train_tables, "force_overlap": o.force_overlap}
    av_dir = hub.resolve(o.av, revision=o.revision, subfolder=o.subfolder) if o.av else None
    ar_dir = hub.resolve(o.ar, revision=o.revision, subfolder=o.subfolder) if o.ar else None
    fixed_dir = hub.resolve(o.fixed_ar) if o.fixed_ar else None
    if o.run_dir is not None:
        extras = Extras(spliced_loss=True, base_model=o.base_model) if o.spliced_loss else None
        report = evaluate_trajectory(
            o.run_dir, table, av=av_dir, ar=ar_dir, loss_log=o.loss_log, fixed_ar=fixed_dir, extras=extras,
            **load, **common,
        )  # fmt: skip
        click.echo(headline.trajectory_headline(report))
    elif av_dir is None and ar_dir is None and o.cross_avs and o.cross_ars:
        avs = {n: hub.resolve(x) for n, x in names(o.cross_avs).items()}
        ars = {n: hub.resolve(x) for n, x in names(o.cross_ars).items()}
        report = evaluate_cross_pair(avs, ars, table, **load, **common)
        click.echo(report.figures.cross_pair.headline())
    else:
        if av_dir is None or ar_dir is None:
            raise click.UsageError(
                "give both --av and --ar (or --trajectory with one of them, or --cross-av and --cross-ar)"
            )
        wanted = o.spliced_loss or any(flags[k] for k in PAIR_ONLY)
        extras = build_extras(o, (av_dir, ar_dir), table) if wanted else None
        pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, **load)
        extras = with_fixed_ar(extras, pair, fixed_dir, o.fixed_ar, load)
        where = {"revision": o.revision, "subfolder": o.subfolder}
        ckpts: dict = {
            role: {**checkpoint_record(folder), "source": source, **where}
            for role, folder, source in (("av", av_dir, o.av), ("ar", ar_dir, o.ar))
        }
        if (base := base_record(av_dir, ar_dir, o.base_model)) is not None:
            ckpts["base"] = base
        report = evaluate_pair(pair, table, checkpoints=ckpts, progress=True, extras=extras, **common)
        click.echo(headline.headline(report))
    if processes.is_main():
        click.echo(f"wrote {Path(o.out_dir) / 'eval.json'}")


def names(sources: Sequence[str]) -> dict[str, str]:
    """A short, unique name per source (its last path part; the whole string where two would clash)."""
    short = [Path(str(s).rstrip("/")).name or str(s) for s in sources]
    return {(sh if short.count(sh) == 1 else str(s)): s for sh, s in zip(short, sources)}


def labeler(
    endpoint: str | None, model: str | None, local: str | None, device: str | None, flag: str = "paraphrase"
):
    """The labeler backend the ``--<flag>-endpoint/-model/-local`` flags name, or ``None`` (a local judge
    is a `LikelihoodJudge`)."""
    from hubkit.data.labelers import OpenAIChatLabeler, TransformersLabeler  # lazy: as in `eval_command`
    from hubkit.eval.local_judge import LikelihoodJudge  # lazy: as above
    from hubkit.precision import resolve_dtype  # lazy: as above

    if endpoint and local:
        raise click.UsageError(f"give --{flag}-endpoint or --{flag}-local, not both")
    if endpoint:
        if not model:
            raise click.UsageError(f"--{flag}-endpoint needs --{flag}-model (the model to ask)")
        return OpenAIChatLabeler(endpoint, model)
    if model:
        raise click.UsageError(f"--{flag}-model needs --{flag}-endpoint")
    if local:
        local_model = LikelihoodJudge if flag == "judge" else TransformersLabeler
        return local_model.from_pretrained(local, dtype=resolve_dtype("auto", device), device=device or "cpu")
    return None


def build_extras(o: SimpleNamespace, pair_dirs: tuple[Path, Path], table):
    """`Extras` from the flags; cross halves load with the pair's base, device and dtype."""
    from hubkit import hub  # lazy: as in `eval_command`
    from hubkit.eval.cross_pair import load_half  # lazy: as above
    from hubkit.eval.extras import Extras  # lazy: as above

    own, halves = [], {}
    for role, source, crossed in (("av", o.av, o.cross_avs), ("ar", o.ar, o.cross_ars)):
        named = list(names([source, *crossed]).items())
        own.append(named[0][0])
        halves[role] = {n: hub.resolve(x) for n, x in named[1:]}
    extras = Extras(
        claim_ablation=o.claim_ablation,
        max_claims=o.max_claims,
        cross_avs=halves["av"],
        cross_ars=halves["ar"],
        names=(own[0], own[1]),
        loader=functools.partial(load_half, base_model=o.base_model, device=o.device, dtype=o.dtype),
        spliced_loss=o.spliced_loss,
        base_model=o.base_model,
    )
    # cross cells are checked from the metas before the paraphraser (maybe a local model) loads
    extras.check(SimpleNamespace(av=pair_dirs[0], ar=pair_dirs[1]), table)
    extras.paraphraser = labeler(o.paraphrase_endpoint, o.paraphrase_model, o.paraphrase_local, o.device)
    extras.judge = labeler(o.judge_endpoint, o.judge_model, o.judge_local, o.device, flag="judge")
    return extras


def with_fixed_ar(extras, pair, fixed_dir, source: str | None, load: dict):
    """`extras` with ``--fixed-ar`` loaded; a warning when an RL co-trained AR is the only yardstick."""
    from hubkit.eval.extras import Extras  # lazy: as in `eval_command`
    from hubkit.eval.yardstick import co_trained  # lazy: as above

    if fixed_dir is None:
        if co_trained(pair.ar.meta):
            click.echo(
                "warning: this AR was trained alongside the AV in RL, so its figures flatter the pair; give "
                "--fixed-ar with the SFT AR the run started from to report the fixed-yardstick figures too",
                err=True,
            )
        return extras
    return (extras or Extras()).load_fixed_ar(fixed_dir, source, **load)
