"""`hubkit eval`: the click command (registered by `hubkit.cli` with ``main.add_command(eval_command)``)."""

from __future__ import annotations

from pathlib import Path

import click

from hubkit.cli.options import engine_option, load_options
from hubkit.eval.cli_extras import (
    build_extras,
    cross_headline,
    extra_options,
    extras_headline,
    names,
    with_fixed_ar,
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
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for eval.json, rows.parquet and plots/.",
)
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
@click.option("--sample/--greedy", default=False, show_default=True)
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
def eval_command(
    av,
    ar,
    table_path,
    out_dir,
    run_dir,
    train_tables,
    force_overlap,
    sidecar,
    loss_log,
    rows,
    seed,
    max_new_tokens,
    batch_size,
    ar_batch_size,
    sample,
    temperature,
    top_p,
    n_boot,
    no_plots,
    fixed_ar,
    engine,
    paraphrase_endpoint,
    paraphrase_model,
    paraphrase_local,
    claim_ablation,
    max_claims,
    cross_avs,
    cross_ars,
    spliced_loss,
    judge_endpoint,
    judge_model,
    judge_local,
    revision,
    subfolder,
    base_model,
    device,
    dtype,
) -> None:
    """Evaluate an NLA pair (or a trajectory) on a held-out table; write eval.json, rows.parquet, plots."""
    from hubkit import hub, processes

    device = processes.local_device(device)  # under a launcher, `cuda` is each process's own GPU
    from hubkit.eval.report import checkpoint_record
    from hubkit.eval.run import base_record, evaluate_pair, evaluate_trajectory, load_pair
    from hubkit.eval.table import EvalTable

    paraphraser = (paraphrase_endpoint, paraphrase_model, paraphrase_local)
    judged = (judge_endpoint, judge_model, judge_local)
    pair_only = any(paraphraser) or claim_ablation or cross_avs or cross_ars or any(judged)
    wants_extras = pair_only or spliced_loss
    if run_dir is not None and pair_only:
        raise click.UsageError(
            "paraphrase, claim ablation, cross-pair and judge flags evaluate a pair (--av/--ar), not --trajectory "
            "(--spliced-loss works with both)"
        )
    table = EvalTable.read(table_path, sidecar=sidecar)
    common = dict(
        rows=rows,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        ar_batch_size=ar_batch_size,
        do_sample=sample,
        temperature=temperature,
        top_p=top_p,
        n_boot=n_boot,
        engine=engine,
    )
    av_dir = hub.resolve(av, revision=revision, subfolder=subfolder) if av else None
    ar_dir = hub.resolve(ar, revision=revision, subfolder=subfolder) if ar else None
    fixed_dir = hub.resolve(fixed_ar) if fixed_ar else None
    if run_dir is not None:
        report = evaluate_trajectory(
            run_dir,
            table,
            av=av_dir,
            ar=ar_dir,
            out_dir=out_dir,
            base_model=base_model,
            device=device,
            dtype=dtype,
            loss_log=loss_log,
            train_tables=train_tables,
            force_overlap=force_overlap,
            seed=seed,
            plots=not no_plots,
            fixed_ar=fixed_dir,
            extras=trajectory_extras(spliced_loss, base_model),
            **common,
        )
        traj = report.figures.trajectory
        for p in traj.checkpoints:
            fixed = (
                f"; frozen AR: cos {p.fixed_ar.cos.mean:.4f} FVE {p.fixed_ar.fve.value:.4f} "
                f"top1 {p.fixed_ar.top1:.3f}"
                if p.fixed_ar is not None
                else ""
            )
            click.echo(
                f"{p.name}: cos {p.cos.mean:.4f} floor {p.noise_floor_p95:.4f} "
                f"top1 {p.identification.top1:.3f} (chance {p.identification.chance_top1:.3f})"
                + (
                    f" spliced loss recovered {p.spliced_loss.frac_recovered:.4f}"
                    if p.spliced_loss is not None and p.spliced_loss.frac_recovered is not None
                    else ""
                )
                + fixed
            )
        tr = traj.trend
        click.echo(
            f"trend: {tr.verdict} (slope {tr.slope:.3g}/step, R² {tr.r2:.3f})" if tr else traj.trend_note
        )
    elif av_dir is None and ar_dir is None and cross_avs and cross_ars:
        from hubkit.eval.cross_pair import evaluate_cross_pair
        from hubkit.eval.generation import Generation

        gen = Generation(max_new_tokens, batch_size, ar_batch_size, sample, temperature, top_p, engine)
        report = evaluate_cross_pair(
            {n: hub.resolve(x) for n, x in names(cross_avs).items()},
            {n: hub.resolve(x) for n, x in names(cross_ars).items()},
            table,
            out_dir=out_dir,
            rows=rows,
            seed=seed,
            generation=gen,
            n_boot=n_boot,
            train_tables=train_tables,
            force_overlap=force_overlap,
            base_model=base_model,
            device=device,
            dtype=dtype,
            plots=not no_plots,
        )
        click.echo(cross_headline(report.figures.cross_pair))
    else:
        if av_dir is None or ar_dir is None:
            raise click.UsageError(
                "give both --av and --ar (or --trajectory with one of them, or --cross-av and --cross-ar)"
            )
        extras = None
        if wants_extras:
            crossed = {"av": cross_avs, "ar": cross_ars}
            extras = build_extras(
                paraphraser,
                claim_ablation,
                max_claims,
                crossed,
                (av, ar),
                (av_dir, ar_dir),
                table,
                base_model,
                device,
                dtype,
                spliced_loss=spliced_loss,
                judged=judged,
            )
        pair = load_pair(av_dir, ar_dir, base_model, device, dtype)
        extras = with_fixed_ar(extras, pair, fixed_dir, fixed_ar, base_model, device, dtype)
        where = {"revision": revision, "subfolder": subfolder}
        ckpts: dict = {
            "av": {**checkpoint_record(av_dir), "source": av, **where},
            "ar": {**checkpoint_record(ar_dir), "source": ar, **where},
        }
        base = base_record(av_dir, ar_dir, base_model)
        if base is not None:
            ckpts["base"] = base
        report = evaluate_pair(
            pair,
            table,
            out_dir=out_dir,
            seed=seed,
            train_tables=train_tables,
            force_overlap=force_overlap,
            checkpoints=ckpts,
            plots=not no_plots,
            progress=True,
            extras=extras,
            **common,
        )
        click.echo(headline(report))
    if processes.is_main():
        click.echo(f"wrote {Path(out_dir) / 'eval.json'}")


def trajectory_extras(spliced_loss: bool, base_model: str | None):
    """The sections every checkpoint of a trajectory eval adds (spliced loss only), or None."""
    from hubkit.eval.extras import Extras

    return Extras(spliced_loss=True, base_model=base_model) if spliced_loss else None


def headline(report) -> str:
    """A few lines a human reads first: round trip with and without unparsed outputs, floor, controls, identification."""
    f = report.figures
    rt = f.round_trip
    lines = []
    for block, label in ((rt.all, "all rows"), (rt.valid_only, "parsed only")):
        c = block.cos
        if c.mean is None:
            lines.append(f"round trip ({label}): n=0")
            continue
        fv = block.fve
        ci = f" [{c.ci_low:.4f}, {c.ci_high:.4f}]" if c.ci_low is not None else ""
        fve_txt = (
            f", FVE {fv.value:.4f} (B={fv.baseline_b:.4f})" if fv is not None and fv.value is not None else ""
        )
        lines.append(
            f"round trip ({label}, n={c.n}): cos {c.mean:.4f}{ci} ± {c.std or 0:.4f}, "
            f"median {c.median:.4f}{fve_txt}"
        )
    fl = f.noise_floor
    lines.append(
        f"noise floor p95 {fl.p95:.4f} (mismatched mean {fl.mean:.4f}); {fl.frac_above:.1%} of rows above; "
        f"{rt.n_excluded} unparsed AV outputs {rt.statuses}"
    )
    cs = f.content_sensitivity.av
    deltas = ", ".join(f"{c.name} {c.delta.mean:+.4f}" for c in cs.controls)
    lines.append(f"AR content sensitivity: {cs.verdict} (real − control: {deltas})")
    t1, t5 = f.identification.at(1), f.identification.at(5)
    lines.append(
        f"identification: top-1 {t1.accuracy:.3f} (chance {t1.chance:.3f}), top-5 {t5.accuracy:.3f} "
        f"(chance {t5.chance:.3f}); reads vectors: {report.verdicts.reads_vectors}"
    )
    d = f.diversity
    lines.append(f"diversity: {d.distinct}/{d.n} distinct explanations, {d.distinct_stems} distinct openings")
    lines += extras_headline(f)
    return "\n".join(lines)
