"""The summary `hubkit demo` prints at the end: where things are, this run's numbers, and what they mean."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hubkit.demo.run import DemoResult

# Below these, a figure is described as "close to" its control (wording only; the numbers are printed).
NEAR_FLOOR = 0.05  # mean cosine minus the mean cosine against other rows' vectors
MOSTLY_BLIND = 0.8  # share of the real cosine an empty string already reaches


def interpret(fig: dict[str, Any]) -> str:
    """Plain sentences on what the numbers say, each one derived from them (no verdict is fixed)."""
    out = []
    hits = f"top-1 {fig['top1_hits']}/{fig['n']}, chance {fig['top1_chance']:.3f}, p={fig['top1_p']:.2g}"
    if fig["reads_vectors"]:
        out.append(
            f"The round trip picks out its own vector more often than chance ({hits}): the explanations "
            "carry some information specific to the vector they came from."
        )
    else:
        out.append(
            f"The round trip does not pick out its own vector more often than chance ({hits}): at this scale "
            "the explanations say nothing measurable that is specific to their vector."
        )
    above = fig["cos_mean"] - fig["floor_mean"]
    if above < NEAR_FLOOR:
        out.append(
            f"The mean cosine {fig['cos_mean']:.3f} is what a reconstruction also scores against other rows' "
            f"vectors ({fig['floor_mean']:.3f}): it measures the direction all layer-{fig['layer']} vectors "
            "share, not the text."
        )
    else:
        out.append(
            f"The mean cosine {fig['cos_mean']:.3f} is {above:+.3f} above what a reconstruction scores against "
            f"other rows' vectors ({fig['floor_mean']:.3f})."
        )
    if fig["fve"] is not None and fig["fve"] < 0:
        out.append(
            f"FVE is {fig['fve']:.3f}: the reconstructions are further from the vectors than their mean is."
        )
    lo, hi = fig["empty_delta_ci"]
    delta = f"{fig['empty_delta']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    share = fig["empty_cos"] / fig["cos_mean"] if fig["cos_mean"] else None
    share_txt = f"an empty string alone reaches {share:.0%} of the real cosine" if share is not None else ""
    if lo is None or lo <= 0:
        out.append(
            f"The AR does not measurably read the text: real explanations beat an empty string by {delta}, so "
            "it writes much the same vector whatever it reads."
        )
    elif share is not None and share >= MOSTLY_BLIND:
        out.append(
            f"The AR reacts to the text, but little: real explanations beat an empty string by {delta}, and "
            f"{share_txt}."
        )
    else:
        out.append(f"The AR reads the text: real explanations beat an empty string by {delta} ({share_txt}).")
    return " ".join(out)


def summary_text(result: DemoResult) -> str:
    """The closing summary: where things are, what was pushed, the numbers and what they mean."""
    f, r, s = result.figures, result.reload, result.settings
    lines = [
        "",
        f"hubkit demo finished in {sum(result.stage_seconds.values()) / 60:.1f} min ({s.model}, {s.rows} labeled rows, "
        f"{s.labeler} labels, {s.ar_steps} AR + {s.steps} AV SFT steps, {s.grpo_steps} GRPO steps, "
        f"seed {s.seed}; load average {_load()})",
        "",
        f"  run folder     {result.out_dir}",
        f"  eval           {result.eval_json}",
        f"  trajectory     {result.trajectory_eval_json}",
        "  plots          " + ("\n                 ".join(str(p) for p in result.plots) or "(none)"),
        "  cards          " + "\n                 ".join(f"{k}: {v}" for k, v in result.cards.items()),
        f"  local Hub      {result.hub_root} (serve it again: hubkit hub serve --root {result.hub_root})",
        "  repos          "
        + "\n                 ".join(f"{v}  @ {result.tag}" for v in result.repos.values()),
        "",
        f"  round trip (held-out, n={f['n']}): mean cosine {f['cos_mean']:.3f}, 95% CI "
        f"[{f['cos_ci'][0]:.3f}, {f['cos_ci'][1]:.3f}]; FVE {_num(f['fve'])}",
        f"  noise floor: mean cosine against other rows' vectors {f['floor_mean']:.3f} "
        f"(p95 {f['floor_p95']:.3f}); "
        f"{f['frac_above_floor']:.0%} of rows above p95",
        f"  content sensitivity: real explanation − empty string = {f['empty_delta']:+.3f} "
        f"[{_num(f['empty_delta_ci'][0], '+.3f')}, {_num(f['empty_delta_ci'][1], '+.3f')}] (AR verdict: "
        f"{f['ar_content']})",
        f"  identification: top-1 {f['top1']:.3f} ({f['top1_hits']}/{f['n']}) vs chance {f['top1_chance']:.3f}"
        f" ({_times(f['top1'], f['top1_chance'])} chance)",
        f"  reloaded from the Hub by repo id @ {result.tag}: mean cosine {r.mean_cos:.3f} on {len(r.cos)} rows, "
        f"{r.same_explanations}/{len(r.cos)} explanations identical to the eval's, max |Δcos| "
        f"{r.max_abs_cos_diff_vs_eval:.1e}",
    ]
    lines += rl_lines(result)
    if result.ar_only is not None:
        a = result.ar_only
        lines.append(
            f"  AR alone on the true labels: top-1 {a['top1']:.3f} ({a['top1_hits']}/{a['n']}, "
            f"{_times(a['top1'], a['top1_chance'])} chance), mean cosine {a['cos_mean']:.3f} "
            f"(empty string {a['empty_cos_mean']:.3f})"
        )
    if r.explanations:
        lines.append(f"  e.g. row {r.rows[0]}: {r.explanations[0]!r} (cos {r.cos[0]:.3f})")
    lines += ["", "  What the explanations are: " + result.explanations_are]
    lines += ["", "  What it means: " + interpret(f)]
    lines += [f"  note: {note}" for note in result.notes]
    lines += [  # publishing the AV for real: a spec from the run, then the release (prose written in between)
        "",
        "  publish its AV as av-v0.1 (write the spec's `<<fill in: …>>` values between the two):",
        f"    hubkit release init av-v0.1 --kind av --run {Path(result.out_dir) / 'run'} --eval {result.eval_json} "
        "--repo YOUR-ORG/NAME",
        "    hubkit release av-v0.1 --push",
    ]
    return "\n".join(lines)


def rl_lines(result: DemoResult) -> list[str]:
    """SFT → RL for each headline figure, on the same held-out rows: the RL pair read by its co-trained AR
    and, beside it, by the frozen SFT AR (the yardstick that was not trained against the AV)."""
    sft, rl = result.sft_figures, result.figures
    if sft is None:
        return []
    fixed = rl.get("fixed_ar") or {}
    n = rl["n"]

    def row(name: str, key: str, fmt: str) -> str:
        frozen = f", frozen SFT AR {format(fixed[key], fmt)}" if key in fixed else ""
        return f"    {name:<13} {_num(sft[key], fmt)} → {_num(rl[key], fmt)} (co-trained AR){frozen}"

    chance = rl["top1_chance"]
    figures = (
        ("cosine", "cos_mean", ".3f"),
        ("FVE", "fve", "+.3f"),
        ("top-1", "top1", ".3f"),
        ("real − empty", "empty_delta", "+.3f"),
    )
    return [
        f"  SFT → RL ({result.settings.grpo_steps} GRPO steps; same {n} held-out rows; top-1 chance {chance:.3f}):",
        *(row(*figure) for figure in figures),
    ]


def _num(x: Any, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _times(value: float, chance: float) -> str:
    return f"{value / chance:.1f}x" if chance else "n/a"


def _load() -> str:
    """The 1-minute load average and the core count: the demo's time depends on what else runs."""
    try:
        return f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except OSError:
        return "n/a"
