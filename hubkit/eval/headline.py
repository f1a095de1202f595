"""What `hubkit eval` prints first: a few lines a human reads before eval.json."""

from __future__ import annotations

from hubkit.eval.extras import ci_text, headlines
from hubkit.eval.report import EvalReport


def headline(report: EvalReport) -> str:
    """Round trip with and without unparsed outputs, floor, controls, identification, diversity, sections."""
    f = report.figures
    rt = f.round_trip
    lines = []
    for block, label in ((rt.all, "all rows"), (rt.valid_only, "parsed only")):
        c = block.cos
        if c.mean is None:
            lines.append(f"round trip ({label}): n=0")
            continue
        line = f"round trip ({label}, n={c.n}): cos {c.mean:.4f}{ci_text(c)} ± {c.std or 0:.4f}, median {c.median:.4f}"
        if (fv := block.fve) is not None and fv.value is not None:
            line += f", FVE {fv.value:.4f} (B={fv.baseline_b:.4f})"
        lines.append(line)
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
    return "\n".join(lines + headlines(f))


def trajectory_headline(report: EvalReport) -> str:
    """One line per checkpoint, then the trend verdict."""
    traj = report.figures.trajectory
    lines = []
    for p in traj.checkpoints:
        sl, fa = p.spliced_loss, p.fixed_ar
        line = (
            f"{p.name}: cos {p.cos.mean:.4f} floor {p.noise_floor_p95:.4f} "
            f"top1 {p.identification.top1:.3f} (chance {p.identification.chance_top1:.3f})"
        )
        if sl and sl.frac_recovered is not None:
            line += f" spliced loss recovered {sl.frac_recovered:.4f}"
        if fa:
            line += f"; frozen AR: cos {fa.cos.mean:.4f} FVE {fa.fve.value:.4f} top1 {fa.top1:.3f}"
        lines.append(line)
    tr = traj.trend
    lines.append(
        f"trend: {tr.verdict} (slope {tr.slope:.3g}/step, R² {tr.r2:.3f})" if tr else traj.trend_note
    )
    return "\n".join(lines)
