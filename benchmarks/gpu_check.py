"""The GPU check: one run, one table. Round trip (hubkit bf16 batched vs the per-row loop) at N = 32 and
256 with the generation's peak GPU memory, AV/AR LoRA and QLoRA (NF4) step time and peak GPU memory
on SmolLM2-135M and Gemma-3-270M, the FSDP path with one process (AV full, AR LoRA, GRPO; see
gpu_check_fsdp.py), and `hubkit demo`. Driven by benchmarks/gpu_check.sh (which bounds the wall
time); a part that would start with less than a minute of that budget left is reported as skipped.

    python benchmarks/gpu_check.py [--dry-run] [--device cuda] [--out table.md]

`--dry-run` runs every part at toy sizes on whatever device is given (CPU works) to check the
script itself: SmolLM2 only, N = 4, 4 new tokens, 2 training steps, `hubkit demo --quick`.
The per-row side at N = 256 times the first 32 rows and reports throughput (rows/s), so the ratio
compares rates; the table says which rows were extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
from gpu_check_fsdp import fsdp_rows

from hubkit import models
from hubkit.testing import write_real_pair

MODELS = {"smollm2-135m": 20, "gemma3-270m": 12}
PER_ROW_CAP = 32


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def round_trip_rows(model: str, layer: int, sizes: list[int], new_tokens: int, device: str) -> list[dict]:
    """hubkit batched in bf16 (defaults otherwise) vs one row at a time, same dtype and device."""
    from hubkit import NLAPair

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, _ = write_real_pair(model, Path(tmp), layer)
        pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, device=device, dtype="bfloat16")
        d = pair.av.meta.d_model
        pair.round_trip(torch.randn(2, d) * 50, max_new_tokens=2)
        for n in sizes:
            v = torch.randn(n, d, generator=torch.Generator().manual_seed(n)) * 50
            _sync(device)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            res = pair.round_trip(v, batch_size=min(n, 256), max_new_tokens=new_tokens)
            _sync(device)
            t_batch = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
            k = min(n, PER_ROW_CAP)
            t0 = time.perf_counter()
            for i in range(k):
                text = pair.av.explain(
                    v[i : i + 1], batch_size=1, max_new_tokens=new_tokens, prefix_cache=False
                )
                pair.ar.reconstruct(text, batch_size=1)
            _sync(device)
            t_row = time.perf_counter() - t0
            rows.append(
                {
                    "what": f"round trip {model} N={n} ({new_tokens} tok)",
                    "hubkit_s": t_batch,
                    "per_row_s": t_row * n / k,
                    "ratio": (t_row / k) / (t_batch / n),
                    "note": "" if k == n else f"per-row timed on {k} rows, scaled to {n}",
                    "mean_cos": float(res.cos.mean()),
                    **({"peak_gpu_mb": peak} if peak is not None else {}),
                }
            )
    return rows


def random_tables(model: str, folder: Path, rows: int) -> tuple[Path, Path]:
    """AV and AR SFT tables of random vectors at the model's width (step time does not need real ones)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(models.prepare(model)))
    d = cfg.get_text_config().hidden_size
    vectors = torch.randn(rows, d, generator=torch.Generator().manual_seed(0)) * 50
    col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.flatten().numpy(), pa.float32()), d)
    texts = [f"an explanation of row {i} about cats, rivers and code" for i in range(rows)]
    base = {"doc_id": [f"d{i}" for i in range(rows)], "position": list(range(rows))}
    av, ar = folder / "av_sft.parquet", folder / "ar_sft.parquet"
    pq.write_table(pa.table({**base, "vector": col, "explanation": texts}), av)
    pq.write_table(pa.table({**base, "explanation": texts, "vector": col}), ar)
    return av, ar


def train_rows(model: str, layer: int, steps: int, device: str, data_rows: int) -> list[dict]:
    """One short LoRA and QLoRA (NF4) run each for the AV and the AR through hubkit's training code."""
    from bench_train_smollm2 import stage

    from hubkit.schema import to_dict
    from hubkit.train.loop import RunOptions
    from hubkit.train.recipe import load_recipe, recipe_from_dict
    from hubkit.train.sft_ar import train_ar
    from hubkit.train.sft_av import train_av

    out = []
    recipe_file = Path(__file__).resolve().parents[1] / "training" / f"{model}.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        av_data, ar_data = random_tables(model, folder, data_rows)
        nla = to_dict(load_recipe(recipe_file).nla) if recipe_file.exists() else {}
        for kind in ("lora", "qlora"):
            for name, fn, data in (("av", train_av, av_data), ("ar", train_ar, ar_data)):
                common = {"base_model": model, "layer": layer, "dtype": "bfloat16", "output_dir": str(folder)}
                if nla:
                    common["nla"] = nla
                recipe = recipe_from_dict({**common, name: stage(steps, data, kind)})
                run_dir = folder / f"{name}_{kind}"
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                row = {"what": f"{name.upper()} {kind} step {model}"}
                try:
                    fn(recipe, RunOptions(out=str(run_dir), quiet=True, device=device))
                    secs = [
                        json.loads(x)["seconds"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
                    ]
                    row["step_s"] = statistics.median(secs[1:] or secs)
                    if device.startswith("cuda"):
                        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
                except Exception as exc:  # one failing configuration must not hide the others
                    row["error"] = (
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                    )
                out.append(row)
    return out


def demo_row(quick: bool, timeout: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "hubkit.cli",
        "demo",
        "--fresh",
        "--out",
        tempfile.mkdtemp(prefix="gpu-demo-"),
    ]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {
            "what": "hubkit demo" + (" --quick" if quick else ""),
            "wall_s": time.perf_counter() - t0,
            "rc": proc.returncode,
            "note": " | ".join(tail)[:300],
        }
    except subprocess.TimeoutExpired:
        return {"what": "hubkit demo", "wall_s": float(timeout), "rc": "timeout", "note": f"over {timeout} s"}


def table(rows: list[dict], header: str) -> str:
    cols = [
        "what",
        "hubkit_s",
        "per_row_s",
        "ratio",
        "step_s",
        "peak_gpu_mb",
        "wall_s",
        "mean_cos",
        "rc",
        "note",
        "error",
    ]
    used = [c for c in cols if any(c in r for r in rows)]
    lines = [header, "", "| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
    for r in rows:
        cells = []
        for c in used:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="toy sizes on any device (CPU works)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    ap.add_argument("--demo-timeout", type=int, default=150)
    args = ap.parse_args()
    dry = args.dry_run
    sizes, new_tokens, steps = ([4], 4, 2) if dry else ([32, 256], 48, 4)
    names = ["smollm2-135m"] if dry else list(MODELS)
    rows: list[dict] = []
    # gpu_check.sh stops the run at GPU_CHECK_LIMIT_S: keep 20 s to print the table
    started, budget = time.perf_counter(), float(os.environ.get("GPU_CHECK_LIMIT_S", "470")) - 20

    def time_left() -> float:
        return budget - (time.perf_counter() - started)

    for name in names:
        try:
            models.prepare(name)
        except Exception as exc:
            rows.append({"what": f"prepare {name}", "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
            continue
        rt_sizes = sizes if name == "smollm2-135m" else sizes[:1]
        parts = [
            ("round trip", round_trip_rows, (name, MODELS[name], rt_sizes, new_tokens, args.device)),
            ("training", train_rows, (name, MODELS[name], steps, args.device, 8 if dry else 16)),
        ]
        if name == "smollm2-135m":
            tables = random_tables(name, Path(tempfile.mkdtemp(prefix="gpu-fsdp-")), 16)
            parts.append(("fsdp", fsdp_rows, (name, MODELS[name], steps, args.device, tables, 150)))
        for label, part, part_args in parts:
            if time_left() < 60:
                rows.append(
                    {"what": f"{label} {name}", "error": "skipped: under 60 s of the time budget left"}
                )
                continue
            if label == "fsdp":  # three launches share what is left
                part_args = (*part_args[:-1], max(30, int((time_left() - 10) / 3)))
            try:
                rows.extend(part(*part_args))
            except Exception as exc:
                traceback.print_exc()
                rows.append({"what": f"{label} {name}", "error": f"{type(exc).__name__}: {str(exc)[:160]}"})
    if time_left() > args.demo_timeout + 10:
        rows.append(demo_row(quick=dry, timeout=args.demo_timeout))
    else:
        rows.append({"what": "hubkit demo", "error": "skipped: not enough of the time budget left"})
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    text = table(
        rows, f"gpu_check on {args.device} ({gpu}), torch {torch.__version__}{' DRY RUN' if dry else ''}"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
