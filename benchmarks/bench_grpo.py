"""GRPO against continued SFT of the same AV for the same wall time, from one SFT pair.

From a finished `hubkit demo` folder (its SFT AV and AR, its tables and recipe), side by side in one run:

* **GRPO** with the recipe's GRPO section (the published recipes' shape by default: KL 0.01 to the SFT
  AV, the AR trained alongside at 5× the AV's rate, 8 samples per vector, failures −2, hinged length
  penalty) for `--steps` steps, a checkpoint every `--every`;
* **continued SFT** of the same SFT AV on its SFT table (`av.init`) for the wall time GRPO took (the
  step count estimated from the SFT run's own seconds per step), the same number of checkpoints.

Each checkpoint is evaluated on `--eval-rows` held-out rows: GRPO checkpoints with their co-trained
AR *and* the frozen SFT AR (`fixed_ar`), SFT checkpoints with the SFT AR; the SFT pair itself is
step 0. Printed as one table (cos, FVE, top-1, real − empty) and drawn as FVE against wall time.

    python benchmarks/bench_grpo.py --demo ~/.cache/hubkit/demo [--steps 40] [--every 10]
        [--eval-rows 128] [--rl-rows 0] [--out bench-grpo] [--json out.json] [--grpo KEY=VALUE ...]

`--scaling` instead times GRPO steps at 1 and 4 vectors × 8 samples (8 and 32 rollouts, 40 tokens) from
the same SFT pair and prints the seconds per step by phase (sampling, scoring, log-probs, policy update,
AR step) and the ratio: a step's cost should grow about linearly with its rollouts.

`--rl-rows N` draws the GRPO vectors from N rows of the AV SFT table instead of the demo's RL table
(the vectors only: RL needs no labels). `--grpo lr=1e-4 group_size=4 …` overrides GRPO recipe keys
(``lr`` and ``ar_lr`` go to the optimisers). Quote the CPU and the load with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from hubkit.eval.generation import Generation
from hubkit.eval.table import EvalTable
from hubkit.eval.trajectory import evaluate_trajectory
from hubkit.train.grpo import train_grpo
from hubkit.train.loop import RunOptions
from hubkit.train.recipe import recipe_from_dict
from hubkit.train.sft_av import train_av
from hubkit.train.trajectory import latest_step


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        parsed = yaml.safe_load(value)
        try:  # YAML reads 1e-4 (no dot) as a string
            parsed = float(parsed) if isinstance(parsed, str) else parsed
        except ValueError:
            pass
        out[key] = parsed
    return out


def grpo_section(base: dict, demo: Path, args, av: Path, ar: Path, rl: Path) -> dict:
    g = dict(base.get("grpo") or {})
    g.update(
        data=str(rl),
        av_init=str(av),
        ar_init=str(ar),
        steps=args.steps,
        checkpoint_every=args.every,
        micro_batch_size=2,
        group_size=8,
        max_new_tokens=40,
        length_target=36,
        temperature=1.0,
    )
    for k in ("kl_coef", "reference", "train_ar", "parse_penalty"):
        g.pop(k, None)  # the recipe defaults: the published recipes' shape (ar_lr: the demo's, when set)
    g["optim"] = {"lr": 1e-4, "schedule": "constant"}
    over = parse_overrides(args.grpo)
    if "lr" in over:
        g["optim"]["lr"] = over.pop("lr")
    g.update(over)
    return g


def rl_table(demo: Path, rows: int, out: Path) -> Path:
    """The demo's RL table, or `rows` rows of its AV SFT table (vectors only)."""
    if rows <= 0:
        return demo / "data" / "built" / "rl.parquet"
    import pyarrow.parquet as pq

    t = pq.read_table(demo / "data" / "built" / "av_sft.parquet")
    t = t.select([c for c in ("doc_id", "position", "prefix", "vector") if c in t.column_names]).slice(
        0, rows
    )
    path = out / "rl_from_av_sft.parquet"
    pq.write_table(t, path)
    return path


def sft_seconds_per_step(run: Path) -> float:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return statistics.median(m["seconds"] for m in lines[1:] if "seconds" in m)


def figures(point) -> dict[str, Any]:
    row = {
        "cos": point.cos.mean,
        "fve": point.fve.value if point.fve else None,
        "top1": point.identification["top1"],
        "chance": point.identification["chance_top1"],
    }
    if point.fixed_ar is not None:
        row |= {
            "frozen_cos": point.fixed_ar.cos.mean,
            "frozen_fve": point.fixed_ar.fve.value,
            "frozen_top1": point.fixed_ar.top1,
            "frozen_real_minus_empty": point.fixed_ar.real_minus_empty,
        }
    return row


def real_minus_empty(eval_json: Path) -> float:
    ev = json.loads(eval_json.read_text())
    empty = next(c for c in ev["figures"]["content_sensitivity"]["av"]["controls"] if c["name"] == "empty")
    return float(empty["delta"]["mean"])


def evaluate(run: Path, table: EvalTable, args, out: Path, **kw) -> list[dict]:
    rows = args.eval_rows if args.eval_rows < len(table) else None
    gen = Generation(max_new_tokens=40)
    rep = evaluate_trajectory(run, table, out_dir=out, rows=rows, generation=gen, n_boot=200, plots=False, **kw)
    rows = []
    for p in rep.figures.trajectory.checkpoints:
        row = {"name": p.name, "step": p.step, **figures(p)}
        row["real_minus_empty"] = real_minus_empty(out / p.name / "eval.json")
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="a finished `hubkit demo` folder")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--eval-rows", type=int, default=128)
    ap.add_argument("--rl-rows", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-grpo"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--grpo", nargs="*", default=[], help="GRPO recipe overrides, KEY=VALUE")
    ap.add_argument("--skip-sft", action="store_true", help="GRPO only (no continued-SFT control)")
    ap.add_argument("--scaling", action="store_true", help="time 8 vs 32 rollouts per step, by phase")
    args = ap.parse_args()
    if args.scaling:
        return scaling(args)

    demo, out = args.demo.expanduser(), args.out
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((demo / "run" / "recipe.yaml").read_text())
    sft_av, sft_ar = latest_step(demo / "run" / "av"), latest_step(demo / "run" / "ar")
    assert sft_av is not None and sft_ar is not None, f"{demo}: no finished AV/AR SFT runs"
    table = EvalTable.read(demo / "data" / "built" / "eval.parquet")
    results: dict[str, Any] = {"sft_av": str(sft_av), "sft_ar": str(sft_ar), "eval_rows": args.eval_rows}

    # step 0: the SFT pair (a one-checkpoint "trajectory" with the SFT AR fixed)
    start = out / "sft0"
    start.mkdir(exist_ok=True)
    link = start / sft_av.name
    if not link.exists():
        link.symlink_to(sft_av.resolve())
    results["sft_pair"] = evaluate(start, table, args, out / "eval-sft0", ar=sft_ar)[0]

    g = grpo_section(base, demo, args, sft_av, sft_ar, rl_table(demo, args.rl_rows, out))
    recipe = recipe_from_dict({**base, "output_dir": str(out / "run"), "grpo": g}, "bench_grpo")
    t0 = time.perf_counter()
    train_grpo(recipe, RunOptions(quiet=True, resume=True))
    results["grpo_wall_s"] = wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in (out / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()]
    results["grpo_step_s"] = statistics.median(m["seconds"] for m in lines)
    results["grpo_metrics"] = lines
    results["grpo"] = evaluate(out / "run" / "grpo", table, args, out / "eval-grpo", fixed_ar=sft_ar)

    if not args.skip_sft:
        per = sft_seconds_per_step(demo / "run" / "av")
        n = max(args.every, round(wall / per))
        av = dict(base["av"])
        av.update(init=str(sft_av), steps=n, checkpoint_every=max(1, n // max(1, args.steps // args.every)))
        av["optim"] = {**av["optim"], "schedule": "constant", "warmup_steps": 0}
        sft_recipe = recipe_from_dict({**base, "output_dir": str(out / "sft"), "av": av}, "bench_grpo sft")
        t0 = time.perf_counter()
        train_av(sft_recipe, RunOptions(quiet=True, resume=True))
        results["sft_wall_s"] = time.perf_counter() - t0
        results["sft_steps"] = n
        results["sft"] = evaluate(out / "sft" / "av", table, args, out / "eval-sft", ar=sft_ar)

    print(table_text(results))
    plot(results, out / "bench_grpo.png")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")


PHASES = ("sample", "score", "logprobs", "update", "ar")


def scaling(args) -> None:
    """Seconds per GRPO step by phase at 1 and 4 vectors per step (8 samples each), side by side."""
    demo, out = args.demo.expanduser(), args.out
    base = yaml.safe_load((demo / "run" / "recipe.yaml").read_text())
    sft_av, sft_ar = latest_step(demo / "run" / "av"), latest_step(demo / "run" / "ar")
    rows = {}
    for vectors in (1, 4):
        args.steps, args.every = 3, 3
        g = grpo_section(base, demo, args, sft_av, sft_ar, rl_table(demo, args.rl_rows, out))
        g["micro_batch_size"] = vectors
        run = out / f"scaling-{vectors}"
        train_grpo(
            recipe_from_dict({**base, "output_dir": str(run), "grpo": g}, "bench_grpo"),
            RunOptions(quiet=True),
        )
        lines = [json.loads(x) for x in (run / "grpo" / "metrics.jsonl").read_text().splitlines()][
            1:
        ]  # warm-up
        rows[vectors * 8] = {k: statistics.median(m.get(f"seconds_{k}", 0.0) for m in lines) for k in PHASES}
        rows[vectors * 8]["step"] = statistics.median(m["seconds"] for m in lines)
    print("| rollouts | step s | " + " | ".join(PHASES) + " |\n|---|---|" + "---|" * len(PHASES))
    for n, r in rows.items():
        print(f"| {n} | {r['step']:.1f} | " + " | ".join(f"{r[k]:.1f}" for k in PHASES) + " |")
    print(f"32 vs 8 rollouts: {rows[32]['step'] / rows[8]['step']:.2f}x the time for 4x the rollouts")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


def table_text(r: dict[str, Any]) -> str:
    head = "| run | step | AR | cos | FVE | top-1 | real − empty |\n|---|---|---|---|---|---|---|"
    lines = [head]

    def row(run, step, ar, cos, fve, top1, rme):
        lines.append(f"| {run} | {step} | {ar} | {cos:.3f} | {fve:+.3f} | {top1:.3f} | {rme:+.3f} |")

    s = r["sft_pair"]
    row("SFT pair", 0, "SFT AR", s["cos"], s["fve"], s["top1"], s["real_minus_empty"])
    for p in r["grpo"]:
        row("GRPO", p["step"], "co-trained", p["cos"], p["fve"], p["top1"], p["real_minus_empty"])
        row(
            "GRPO",
            p["step"],
            "frozen SFT AR",
            p["frozen_cos"],
            p["frozen_fve"],
            p["frozen_top1"],
            p["frozen_real_minus_empty"],
        )
    for p in r.get("sft", []):
        row("continued SFT", p["step"], "SFT AR", p["cos"], p["fve"], p["top1"], p["real_minus_empty"])
    lines.append(
        f"GRPO {len(r['grpo_metrics'])} steps in {r['grpo_wall_s']:.0f} s ({r['grpo_step_s']:.1f} s/step)"
        + (f"; continued SFT {r['sft_steps']} steps in {r['sft_wall_s']:.0f} s" if "sft" in r else "")
    )
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    s0 = r["sft_pair"]["fve"]
    g_steps = [p["step"] for p in r["grpo"]]
    g_wall = [x / max(g_steps) * r["grpo_wall_s"] for x in g_steps]
    ax.plot([0, *g_wall], [s0, *[p["fve"] for p in r["grpo"]]], "o-", label="GRPO, co-trained AR")
    ax.plot([0, *g_wall], [s0, *[p["frozen_fve"] for p in r["grpo"]]], "s--", label="GRPO, frozen SFT AR")
    if "sft" in r:
        s_steps = [p["step"] for p in r["sft"]]
        s_wall = [x / max(s_steps) * r["sft_wall_s"] for x in s_steps]
        ax.plot([0, *s_wall], [s0, *[p["fve"] for p in r["sft"]]], "^:", label="continued SFT, SFT AR")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(f"held-out FVE ({r['eval_rows']} rows)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
