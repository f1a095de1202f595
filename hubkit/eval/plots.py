"""PNG plots for eval reports and cards, one file per function, drawn on the Agg canvas (no display, no
global backend change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from hubkit.eval.ablations import ContentSensitivity
from hubkit.eval.identification import Identification
from hubkit.eval.metrics import NoiseFloor, Summary
from hubkit.eval.sections import Trajectory

DPI = 110
# PNG text chunks without a timestamp, so the same numbers give the same bytes.
_PNG_META = {"Software": None}


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(str(path), dpi=DPI, metadata=_PNG_META)
    return path


def _band(means, lows, highs) -> tuple[np.ndarray, list[np.ndarray]]:
    """(means, [below, above]) error bars; a missing bound (too few rows for an interval) draws none."""
    m = np.array(means, dtype=float)
    lo = np.array([x if b is None else b for x, b in zip(m, lows)], dtype=float)
    hi = np.array([x if b is None else b for x, b in zip(m, highs)], dtype=float)
    return m, [np.nan_to_num(m - lo), np.nan_to_num(hi - m)]


def _summaries(series: list[Summary]) -> tuple[np.ndarray, list[np.ndarray]]:
    return _band([c.mean for c in series], [c.ci_low for c in series], [c.ci_high for c in series])


def per_row_cosine(cos: np.ndarray, ok: np.ndarray, floor: NoiseFloor, path: str | Path) -> Path:
    """Per-row round-trip cosine (sorted), parsed and unparsed AV outputs marked, with the data's noise floor."""
    order = np.argsort(cos)
    x = np.arange(len(cos))
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    c, k = cos[order], ok[order]
    ax.scatter(x[k], c[k], s=10, color="tab:blue", label=f"parsed explanation (n={int(k.sum())})")
    if (~k).any():
        ax.scatter(
            x[~k], c[~k], s=14, marker="x", color="tab:red", label=f"empty/unparsed (n={int((~k).sum())})"
        )
    ax.axhline(floor.p95, color="black", ls="--", lw=1, label=f"noise floor p95 = {floor.p95:.3f}")
    ax.axhline(floor.mean, color="gray", ls=":", lw=1, label=f"mismatched mean = {floor.mean:.3f}")
    title = f"Round trip per row — {floor.frac_above:.0%} of rows above the floor"
    ax.set(xlabel="rows, sorted by cosine", ylabel="cos(v, v̂)", title=title)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def ablations(cs: ContentSensitivity, path: str | Path) -> Path:
    """AR cosine on the real explanation vs each control (left) and the deltas with 95% intervals (right)."""
    fig = Figure(figsize=(8, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    names = ["real"] + [c.name for c in cs.controls]
    means = [cs.real.mean] + [c.cos.mean for c in cs.controls]
    ax1.bar(names, means, color=["tab:blue"] + ["tab:gray"] * len(cs.controls))
    ax1.set(ylabel="mean cos(v, AR(text))", title=f"AR input ({cs.source} explanations)")
    ax1.tick_params(axis="x", labelrotation=30, labelsize=8)
    dm, err = _summaries([c.delta for c in cs.controls])
    ax2.errorbar([c.name for c in cs.controls], dm, yerr=err, fmt="o", capsize=4)
    ax2.axhline(0, color="black", lw=1)
    ax2.set(ylabel="real − control (95% CI)", title=f"verdict: {cs.verdict}")
    ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _save(fig, path)


def identification(ranks: np.ndarray, ident: Identification, path: str | Path) -> Path:
    """Top-k accuracy against chance (left) and the rank of each row's own vector (right)."""
    fig = Figure(figsize=(8, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    labels = [f"top-{t.k}" for t in ident.top]
    x = np.arange(len(labels))
    acc = [t.accuracy for t in ident.top]
    _, err = _band(acc, [t.ci_low for t in ident.top], [t.ci_high for t in ident.top])
    # clamped: at 0 or N hits the Wilson bound equals the accuracy up to rounding, and matplotlib refuses < 0
    ax1.bar(x - 0.2, acc, 0.4, yerr=np.clip(err, 0, None), capsize=4, label="observed")
    ax1.bar(x + 0.2, [t.chance for t in ident.top], 0.4, color="tab:gray", label="chance k/N")
    ax1.set_xticks(x, labels)
    ax1.set(ylim=(0, 1), title=f"Identification among N={ident.n}")
    ax1.legend(fontsize=7)
    ax2.hist(ranks, bins=min(50, max(5, ident.n // 2)), color="tab:blue")
    ax2.axvline(ident.chance_mean_rank, color="black", ls="--", lw=1, label="chance mean rank")
    ax2.set_xlabel("rank of own vector (0 = first)")
    ax2.legend(fontsize=7)
    return _save(fig, path)


def trajectory(traj: Trajectory, path: str | Path) -> Path:
    """Per checkpoint: mean round-trip cosine (with CI) and noise floor, the same explanations read by a frozen
    AR when measured (beside an AR trained alongside in RL), and the fraction of spliced loss recovered (on a
    second axis) when measured; next to it the loss curve with its fitted line."""
    fig = Figure(figsize=(8, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    points, lc, trend = traj.checkpoints, traj.loss_curve, traj.trend
    steps = [p.step if p.step is not None else i for i, p in enumerate(points)]
    m, err = _summaries([p.cos for p in points])
    ax1.errorbar(steps, m, yerr=err, fmt="o-", capsize=3, label="mean cos (95% CI)")
    kept = [(x, p.fixed_ar.cos) for x, p in zip(steps, points) if p.fixed_ar is not None]
    if kept:
        fm, ferr = _summaries([c for _, c in kept])
        ax1.errorbar(
            [x for x, _ in kept], fm, yerr=ferr, fmt="s--", capsize=3, label="mean cos, frozen SFT AR"
        )
    ax1.plot(steps, [p.noise_floor_p95 for p in points], "k--", lw=1, label="noise floor p95")
    ax1.set(xlabel="step", ylabel="round-trip cosine")
    ax1.legend(fontsize=7, loc="upper left")
    if points[0].spliced_loss is not None:
        sls = [p.spliced_loss for p in points]
        r, rerr = _band([s.frac_recovered for s in sls], [s.ci_low for s in sls], [s.ci_high for s in sls])
        ax3 = ax1.twinx()
        label = "spliced loss recovered (95% CI)"
        ax3.errorbar(steps, r, yerr=rerr, fmt="s:", color="tab:green", capsize=3, label=label)
        ax3.set_ylabel("fraction of loss recovered")
        ax3.legend(fontsize=7, loc="lower right")
    if lc.steps:
        ax2.plot(lc.steps, lc.losses, ".", label="loss")
        if trend is not None:
            xs = np.array([trend.first_step, trend.last_step])
            label = f"{trend.verdict}: slope {trend.slope:.2g}/step, R² {trend.r2:.2f}"
            ax2.plot(xs, trend.slope * xs + trend.intercept, "r-", label=label)
        ax2.set(xlabel="step", ylabel="training loss")
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no loss curve recorded", ha="center", va="center", transform=ax2.transAxes)
    return _save(fig, path)


def cross_pair(cp, path: str | Path) -> Path:
    """Heatmaps of mean round-trip cosine and top-1 identification per AV × AR cell (the pair's own cell boxed)."""
    chance = 1.0 / cp.n
    panels = (
        ("mean round-trip cosine", cp.matrix(lambda c: c.cos.mean)),
        (f"identification top-1 (chance {chance:.3g})", cp.matrix(lambda c: c.identification[0].accuracy)),
    )
    w = max(7.0, 2.2 + 1.1 * len(cp.ars) * 2)
    fig = Figure(figsize=(w, 1.6 + 0.55 * len(cp.avs)))
    for k, (title, m) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(m, cmap="viridis", aspect="auto")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(cp.ars)), [str(a)[-18:] for a in cp.ars], rotation=30, fontsize=7)
        ax.set_yticks(range(len(cp.avs)), [str(a)[-18:] for a in cp.avs], fontsize=7)
        ax.set(xlabel="AR", ylabel="AV")
        ax.set_title(title, fontsize=9)
        if cp.this_pair is not None:
            i, j = cp.avs.index(cp.this_pair["av"]), cp.ars.index(cp.this_pair["ar"])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)
