"""`hubkit eval` flags for the optional sections: paraphrase backend, claim ablation, cross-pair halves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import click

from hubkit.cli.options import stack

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
"""``--paraphrase-endpoint/--paraphrase-model/--paraphrase-local --claim-ablation --max-claims --cross-av --cross-ar
--spliced-loss --judge-endpoint/--judge-model/--judge-local``."""


def names(sources: Sequence[str]) -> dict[str, str]:
    """A short, unique name per source (its last path part; the whole string where two would clash)."""
    short = [Path(str(s).rstrip("/")).name or str(s) for s in sources]
    return {(sh if short.count(sh) == 1 else str(s)): s for sh, s in zip(short, sources)}


def paraphraser(
    endpoint: str | None,
    model: str | None,
    local: str | None,
    device: str | None,
    flag: str = "paraphrase",
):
    """The labeler backend the ``--<flag>-endpoint/-model/-local`` flags name, or ``None``."""
    if endpoint and local:
        raise click.UsageError(f"give --{flag}-endpoint or --{flag}-local, not both")
    if endpoint:
        if not model:
            raise click.UsageError(f"--{flag}-endpoint needs --{flag}-model (the model to ask)")
        from hubkit.data.labelers import OpenAIChatLabeler

        return OpenAIChatLabeler(endpoint, model)
    if model:
        raise click.UsageError(f"--{flag}-model needs --{flag}-endpoint")
    if local:
        from hubkit.data.labelers import TransformersLabeler
        from hubkit.precision import resolve_dtype

        return TransformersLabeler.from_pretrained(
            local, dtype=resolve_dtype("auto", device), device=device or "cpu"
        )
    return None


def judge(endpoint: str | None, model: str | None, local: str | None, device: str | None):
    """The judge backend the ``--judge-*`` flags name, or ``None``: an endpoint answers in words; a local model
    picks the most likely verdict (`hubkit.eval.local_judge.LikelihoodJudge`)."""
    if local and not endpoint and not model:
        from hubkit.eval.local_judge import LikelihoodJudge
        from hubkit.precision import resolve_dtype

        return LikelihoodJudge.from_pretrained(
            local, dtype=resolve_dtype("auto", device), device=device or "cpu"
        )
    return paraphraser(endpoint, model, local, device, flag="judge")


def build_extras(
    para: tuple[str | None, str | None, str | None],
    claim_ablation: bool,
    max_claims: int,
    crossed: dict[str, Sequence[str]],
    pair_sources: tuple[str, str],
    pair_dirs: tuple[Path, Path],
    table,
    base_model: str | None,
    device: str | None,
    dtype: str | None,
    spliced_loss: bool = False,
    judged: tuple[str | None, str | None, str | None] = (None, None, None),
):
    """`Extras` from the flags; cross halves (folders or Hub repo ids) load with the pair's base, device and dtype.

    Every half is named by its last path part (the whole source where two would clash); the pair's own
    AV and AR are named the same way, so the matrix marks them.
    """
    from hubkit import hub
    from hubkit.eval.extras import Extras

    def loader(path: Path, role: str):
        from hubkit.reconstructor import ActivationReconstructor
        from hubkit.verbalizer import ActivationVerbalizer

        cls = ActivationVerbalizer if role == "av" else ActivationReconstructor
        return cls.from_pretrained(path, base_model=base_model, device=device, dtype=dtype)

    own, halves = [], {}
    for role, source in zip(("av", "ar"), pair_sources):
        named = list(names([source, *crossed[role]]).items())
        own.append(named[0][0])
        halves[role] = {n: hub.resolve(x) for n, x in named[1:]}
    extras = Extras(
        claim_ablation=claim_ablation,
        max_claims=max_claims,
        cross_avs=halves["av"],
        cross_ars=halves["ar"],
        names=(own[0], own[1]),
        loader=loader,
        spliced_loss=spliced_loss,
        base_model=base_model,
    )
    # cross cells are checked from the metas before the paraphraser (maybe a local model) loads
    extras.check(SimpleNamespace(av=pair_dirs[0], ar=pair_dirs[1]), table)
    extras.paraphraser = paraphraser(*para, device)
    extras.judge = judge(*judged, device)
    return extras


def with_fixed_ar(extras, pair, fixed_dir, source: str | None, base_model, device, dtype):
    """`extras` with the frozen AR given by ``--fixed-ar`` loaded; a warning when the pair's AR was
    trained alongside its AV in RL and no frozen AR is given (its figures flatter the pair)."""
    from hubkit.eval.yardstick import co_trained

    if fixed_dir is None:
        if co_trained(pair.ar.meta):
            click.echo(
                "warning: this AR was trained alongside the AV in RL, so its figures flatter the pair; give "
                "--fixed-ar with the SFT AR the run started from to report the fixed-yardstick figures too",
                err=True,
            )
        return extras
    from hubkit.eval.extras import Extras

    return (extras or Extras()).load_fixed_ar(fixed_dir, source, base_model, device, dtype)


def cross_headline(cp) -> str:
    """One line per AV: cosine / top-1 against each AR."""
    lines = [
        f"cross-pair matrix on {cp.n} rows (cos / top-1; chance {1 / cp.n:.3f}); ARs: {', '.join(cp.ars)}"
    ]
    for a in cp.avs:
        cells = [cp.cell(a, r) for r in cp.ars]
        lines.append(
            f"  {a}: " + "  ".join(f"{c.cos.mean:.4f}/{c.identification[0].accuracy:.3f}" for c in cells)
        )
    return "\n".join(lines)


def extras_headline(figures) -> list[str]:
    """Headline lines of the optional sections present in a pair report."""
    lines = []
    ps = figures.paraphrase
    if ps is not None:
        d = ps.delta
        ci = f" [{d.ci_low:.4f}, {d.ci_high:.4f}]" if d.ci_low is not None else ""
        mean = f"{d.mean:+.4f}" if d.mean is not None else "n/a"
        lines.append(
            f"paraphrase ({ps.labeler}): cos change {mean}{ci} on {ps.n_used}/{ps.n} rows {ps.statuses}; "
            f"top-1 flips {ps.flips[0].flip_share:.1%}; {ps.verdict}"
        )
    ca = figures.claim_ablation
    if ca is not None and ca.delta.mean is not None:
        lines.append(
            f"claim ablation: {ca.n_claims} claims, mean cosine carried {ca.delta.mean:+.4f}; "
            + ", ".join(f"pos {g.index}: {g.delta.mean:+.4f}" for g in ca.by_index)
        )
    cp = figures.cross_pair
    if cp is not None:
        lines.append(cross_headline(cp))
    fa = figures.fixed_ar
    if fa is not None:
        rt, t1 = fa.round_trip, fa.identification.at(1)
        lines.append(
            f"frozen AR ({fa.ar}) on the same explanations: cos {rt.cos.mean:.4f}, FVE {rt.fve.value:.4f}, "
            f"top-1 {t1.accuracy:.3f}, real − empty {fa.content_sensitivity.control('empty').delta.mean:+.4f}"
            + (" (the pair's own AR was trained alongside in RL)" if fa.evaluated_ar_co_trained else "")
        )
    sl = figures.spliced_loss
    if sl is not None:
        lines.append(f"spliced loss ({sl.n} rows): {sl.headline()}")
    jc = figures.judge
    if jc is not None:
        p, h = jc.claim_precision, jc.hallucination_rate
        lines.append(
            f"judged claims ({jc.judge}, {jc.n_claims} claims): precision {_rate(p)}, hallucination {_rate(h)} {jc.verdicts}"
        )
    return lines


def _rate(r) -> str:
    """``0.123 [0.100, 0.150]`` (or ``n/a``) for a judged-claims rate."""
    if r.value is None:
        return "n/a"
    return f"{r.value:.3f}" + (f" [{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else "")
