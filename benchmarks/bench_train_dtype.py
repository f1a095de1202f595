"""Training step time by precision: hubkit's default (dtype auto) vs forced bf16 vs forced fp32, AV and AR.

    python benchmarks/bench_train_dtype.py [--steps 4] [--rows 16] [--model smollm2-135m] [--json out.json]

One short LoRA run per (stage, dtype) through hubkit's own training code (`train_av` / `train_ar`),
side by side in one run, on real SmolLM2-135M layer-20 vectors. Step times are medians after the
first (warm-up) step. The default is what `hubkit.precision.resolve_dtype("auto")` picks here:
bf16 where the CPU has native bf16 (or on a bf16 GPU), fp32 otherwise.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from bench_train_smollm2 import LAYER, make_tables, run, stage

from hubkit import models, precision
from hubkit.schema import to_dict
from hubkit.train.recipe import load_recipe, recipe_from_dict
from hubkit.train.sft_ar import train_ar
from hubkit.train.sft_av import train_av


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    threads = precision.apply_thread_policy()
    models.prepare("smollm2-135m")
    default = precision.resolve_dtype_name("auto")
    choices = {f"default ({default})": default, "bf16": "bfloat16", "fp32": "float32"}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        av_data, ar_data = make_tables(folder, args.rows)
        shipped = load_recipe(Path(__file__).resolve().parents[1] / "training" / "smollm2-135m.yaml")
        for label, dtype in choices.items():
            common = {
                "base_model": "smollm2-135m",
                "layer": LAYER,
                "dtype": dtype,
                "output_dir": str(folder),
                "nla": to_dict(shipped.nla),
            }
            tag = dtype + ("_default" if label.startswith("default") else "")
            r = recipe_from_dict({**common, "av": stage(args.steps, av_data, "lora")})
            results[f"av {label}"] = run(train_av, r, folder / f"av_{tag}")
            r = recipe_from_dict({**common, "ar": stage(args.steps, ar_data, "lora")})
            results[f"ar {label}"] = run(train_ar, r, folder / f"ar_{tag}")
    bf16_native = precision.cpu_has_native_bf16()
    print(
        f"SmolLM2-135M layer {LAYER}, LoRA r16, micro-batch 4, {threads} CPU threads, "
        f"native bf16: {bf16_native}, torch {torch.__version__}"
    )
    for name, res in results.items():
        print(f"  {name:<24} {res['step_s']:.3f} s/step (first step {res['first_step_s']:.2f} s)")
    for stage_name in ("av", "ar"):
        d = results[f"{stage_name} default ({default})"]["step_s"]
        for other in ("bf16", "fp32"):
            print(
                f"  {stage_name}: {other} / default step time: {results[f'{stage_name} {other}']['step_s'] / d:.2f}x"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
