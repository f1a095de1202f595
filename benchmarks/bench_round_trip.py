"""hubkit's round trip with its defaults vs the per-row loop of published examples, side by side.

    python benchmarks/bench_round_trip.py [--model smollm2-135m] [--n 32] [--new-tokens 48]
        [--sweep 8,16,32,64] [--memory] [--device cuda] [--json out.json]

hubkit's side: `NLAPair.round_trip` with every default (dtype chosen from the hardware, the default
AV batch size, the shared prompt-prefix KV cache). The per-row side: float32 (the fastest per-row
precision on CPUs without native bf16), one vector generated and reconstructed at a time, the whole
prompt recomputed for each, as the published examples do. Both use the same untrained adapter pair
on the real model (LoRA with random B), the same vectors and greedy decoding. `--sweep` times the
AV alone at several batch sizes (how the default was chosen) and the prefix cache on/off. Peak memory is the
peak RSS of a fresh subprocess: (a) the base alone running one forward; (b) the AV+AR pair loaded
from adapter checkpoints on one shared base running a round trip.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hubkit.testing import write_real_pair


def timed_round_trips(
    av_dir: Path, ar_dir: Path, n: int, new_tokens: int, device: str | None = None, per_row: int | None = None
) -> dict:
    """hubkit with its defaults (dtype auto, default batch, prefix cache) vs the per-row fp32 loop.

    `per_row` times the loop on the first rows only and scales its time to `n` (rows/s ratio)."""
    from hubkit import NLAPair, precision

    threads = precision.apply_thread_policy()
    fast = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, device=device)
    slow = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, device=device, dtype="float32")
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, fast.av.meta.d_model, generator=g) * 50
    fast.round_trip(v[:2], max_new_tokens=4)  # warm-up
    slow.round_trip(v[:1], batch_size=1, max_new_tokens=4)
    t0 = time.perf_counter()
    batched = fast.round_trip(v, max_new_tokens=new_tokens)
    t_batched = time.perf_counter() - t0
    print(f"  hubkit defaults: {t_batched:.1f} s for {n} rows", flush=True)
    k = min(n, per_row or n)
    t0 = time.perf_counter()
    texts = [
        slow.av.explain(v[i : i + 1], batch_size=1, max_new_tokens=new_tokens, prefix_cache=False)[0]
        for i in range(k)
    ]
    loop = torch.cat([slow.ar.reconstruct([t], batch_size=1) for t in texts])
    t_loop = (time.perf_counter() - t0) * n / k
    same_text = sum(a == b for a, b in zip(texts, batched.explanations))
    cos_loop = torch.nn.functional.cosine_similarity(v[:k], loop, dim=-1)
    return {
        "dtype_default": str(next(fast.av.model.parameters()).dtype).removeprefix("torch."),
        "threads": threads,
        "batched_s": t_batched,
        "per_row_s": t_loop,
        "speedup": t_loop / t_batched,
        "identical_texts": f"{same_text}/{k}",
        "per_row_timed_rows": k,
        "mean_cos_batched": float(batched.cos.mean()),
        "mean_cos_loop": float(cos_loop.mean()),
    }


def sweep_batch_sizes(av_dir: Path, n: int, new_tokens: int, sizes: list[int]) -> dict:
    """AV generation time of `n` vectors per batch size (default dtype), and the prefix cache on/off."""
    from hubkit import ActivationVerbalizer, precision

    precision.apply_thread_policy()
    av = ActivationVerbalizer.from_pretrained(av_dir)
    v = torch.randn(n, av.meta.d_model, generator=torch.Generator().manual_seed(1)) * 50
    av.explain(v[:2], max_new_tokens=2)
    out: dict = {"batch_s": {}}
    for bs in sizes:
        t0 = time.perf_counter()
        av.explain(v, batch_size=bs, max_new_tokens=new_tokens)
        out["batch_s"][bs] = time.perf_counter() - t0
        print(f"  AV batch {bs}: {out['batch_s'][bs]:.1f} s", flush=True)
    best = min(out["batch_s"], key=out["batch_s"].get)
    out["best_batch"] = best
    t0 = time.perf_counter()
    cached = av.explain(v, batch_size=best, max_new_tokens=new_tokens)
    out["prefix_cache_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = av.explain(v, batch_size=best, max_new_tokens=new_tokens, prefix_cache=False)
    out["no_prefix_cache_s"] = time.perf_counter() - t0
    out["cache_same_texts"] = f"{sum(a == b for a, b in zip(cached, plain))}/{n}"
    return out


_MEM_SCRIPT = r"""
import json, resource, sys, torch
torch.set_num_threads(2)
mode, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "base":
    from hubkit.loading import load_causal_lm
    m = load_causal_lm(a, torch.bfloat16)
    with torch.no_grad():
        m(input_ids=torch.ones(4, 64, dtype=torch.long))
    params = sum(p.numel() * p.element_size() for p in m.parameters())
else:
    from hubkit import NLAPair
    p = NLAPair.from_pretrained(av=a, ar=b, dtype="bfloat16")
    p.round_trip(torch.randn(4, p.av.meta.d_model), max_new_tokens=8)
    unique = {id(t): t for t in [*p.av.model.parameters(), *p.ar.model.parameters(), *p.ar.head.parameters()]}
    params = sum(t.numel() * t.element_size() for t in unique.values())
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"peak_rss_mb": rss, "param_mb": params / 2**20}))
"""


def memory(mode: str, a: str, b: str) -> dict:
    """Peak RSS and parameter MB of a fresh process that loads and runs `mode` ("base" or "pair")."""
    out = subprocess.run(
        [sys.executable, "-c", _MEM_SCRIPT, mode, a, b], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_speed(args: argparse.Namespace, speed: dict) -> None:
    print(
        f"round trip, {args.model}, {args.n} vectors, {args.new_tokens} new tokens, {speed['threads']} CPU threads"
    )
    print(
        f"  hubkit defaults ({speed['dtype_default']}, batched, prefix cache) {speed['batched_s']:8.1f} s"
        f"   (mean cos {speed['mean_cos_batched']:.4f})"
    )
    print(
        f"  per-row loop (float32, one row at a time)            {speed['per_row_s']:8.1f} s"
        f"   (mean cos {speed['mean_cos_loop']:.4f})"
    )
    print(f"  speedup  {speed['speedup']:8.1f} x   identical texts {speed['identical_texts']}")
    if speed["per_row_timed_rows"] < args.n:
        print(f"  (per-row loop timed on {speed['per_row_timed_rows']} rows, scaled to {args.n})")


def print_sweep(sweep: dict, n: int) -> None:
    cells = ", ".join(f"{bs}: {s:.1f} s" for bs, s in sweep["batch_s"].items())
    print(
        f"AV generation of {n} vectors by batch size (default dtype): {cells}; fastest {sweep['best_batch']}"
    )
    print(
        f"  prefix cache on {sweep['prefix_cache_s']:.1f} s vs off {sweep['no_prefix_cache_s']:.1f} s "
        f"({sweep['no_prefix_cache_s'] / sweep['prefix_cache_s']:.2f}x), same texts {sweep['cache_same_texts']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--layer", type=int, default=20)
    ap.add_argument("--device", default=None)
    ap.add_argument("--sweep", default="", help="comma-separated AV batch sizes to time, e.g. 8,16,32,64")
    ap.add_argument("--per-row-rows", type=int, default=None, help="time the per-row loop on this many rows")
    ap.add_argument("--sweep-n", type=int, default=64, help="vectors generated per batch size in --sweep")
    ap.add_argument("--memory", action="store_true", help="also measure peak RSS of base vs pair")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # figures show up as they are measured
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, base = write_real_pair(args.model, Path(tmp), args.layer)
        results["speed"] = timed_round_trips(
            av_dir, ar_dir, args.n, args.new_tokens, args.device, args.per_row_rows
        )
        print_speed(args, results["speed"])
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        if args.sweep:
            sizes = [int(x) for x in args.sweep.split(",") if x]
            results["sweep"] = sweep_batch_sizes(av_dir, args.sweep_n, args.new_tokens, sizes)
            print_sweep(results["sweep"], args.sweep_n)
        if args.memory:
            mem_base = memory("base", base, "-")
            mem_pair = memory("pair", str(av_dir), str(ar_dir))
            results["memory"] = {"base": mem_base, "pair": mem_pair}
            for key, label in (("peak_rss_mb", "peak RSS"), ("param_mb", "parameters")):
                print(
                    f"{label}: base alone {mem_base[key]:.0f} MB, AV+AR pair on one base {mem_pair[key]:.0f} MB, "
                    f"ratio {mem_pair[key] / mem_base[key]:.2f}x"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
