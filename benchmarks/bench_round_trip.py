"""Batched round trip vs the per-row loop of published examples, and the memory of a shared-base pair.

    python benchmarks/bench_round_trip.py [--model smollm2-135m] [--n 32] [--new-tokens 48]

Both sides use the same untrained adapter pair on the real model (LoRA with random B so the
adapters change the output), the same vectors and greedy decoding, in one run. Peak memory is the
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


def build_pair_checkpoints(model_name: str, out: Path, layer: int) -> tuple[Path, Path, str]:
    from peft import LoraConfig, get_peft_model

    from hubkit import arch, models
    from hubkit.checkpoint import write_checkpoint
    from hubkit.heads import identity_head
    from hubkit.injection import pick_marker
    from hubkit.meta import ARSpec, AVSpec, Injection, NLAMeta
    from hubkit.verbalizer import render_prompt

    base = str(models.prepare(model_name))
    model, tok = models.load(model_name, dtype=torch.float32)
    d = arch.hidden_size(model)
    av_spec = AVSpec(template="Explain the activation {injection_char} in a few words.", chat_template=True)
    marker = pick_marker(tok, lambda c: render_prompt(tok, av_spec.template, c, True))
    norm = arch.median_embedding_norm(model)
    inj = Injection(scale=round(norm, 3), marker=marker)
    ar_spec = ARSpec(num_layers=layer + 1)
    common = dict(base_model=base, d_model=d, layer=layer)
    metas = {
        "av": NLAMeta(role="av", injection=inj, av=av_spec, ar=ar_spec, **common),
        "ar": NLAMeta(role="ar", ar=ar_spec, **common),
    }
    for seed, name in enumerate(("av", "ar")):
        torch.manual_seed(seed)
        peft_model = get_peft_model(
            models.load(model_name, dtype=torch.float32)[0],
            LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
        )
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.01)
        write_checkpoint(
            out / name, peft_model, tok, metas[name], head=identity_head(d) if name == "ar" else None
        )
    return out / "av", out / "ar", base


def timed_round_trips(av_dir: Path, ar_dir: Path, n: int, new_tokens: int) -> dict:
    from hubkit import NLAPair

    torch.set_num_threads(2)
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, dtype="bfloat16")
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, pair.av.meta.d_model, generator=g)
    pair.round_trip(v[:2], max_new_tokens=4)  # warm-up
    t0 = time.perf_counter()
    batched = pair.round_trip(v, batch_size=n, max_new_tokens=new_tokens)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    texts = [pair.av.explain(v[i : i + 1], max_new_tokens=new_tokens)[0] for i in range(n)]
    loop = torch.cat([pair.ar.reconstruct([t]) for t in texts])
    t_loop = time.perf_counter() - t0
    same_text = sum(a == b for a, b in zip(texts, batched.explanations))
    cos_loop = torch.nn.functional.cosine_similarity(v, loop, dim=-1)
    return {
        "batched_s": t_batched,
        "per_row_s": t_loop,
        "speedup": t_loop / t_batched,
        "identical_texts": f"{same_text}/{n}",
        "mean_cos_batched": float(batched.cos.mean()),
        "mean_cos_loop": float(cos_loop.mean()),
    }


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
    print(f"round trip, {args.model}, {args.n} vectors, {args.new_tokens} new tokens, bf16, 2 CPU threads")
    print(f"  batched  {speed['batched_s']:8.1f} s   (mean cos {speed['mean_cos_batched']:.4f})")
    print(f"  per-row  {speed['per_row_s']:8.1f} s   (mean cos {speed['mean_cos_loop']:.4f})")
    print(f"  speedup  {speed['speedup']:8.1f} x   identical texts {speed['identical_texts']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--layer", type=int, default=20)
    ap.add_argument("--memory-only", action="store_true", help="Skip the timing, measure memory only.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, base = build_pair_checkpoints(args.model, Path(tmp), args.layer)
        speed = None if args.memory_only else timed_round_trips(av_dir, ar_dir, args.n, args.new_tokens)
        mem_base = memory("base", base, "-")
        mem_pair = memory("pair", str(av_dir), str(ar_dir))
    if speed is not None:
        print_speed(args, speed)
    for key, label in (("peak_rss_mb", "peak RSS"), ("param_mb", "parameters")):
        print(
            f"{label}: base alone {mem_base[key]:.0f} MB, AV+AR pair on one base {mem_pair[key]:.0f} MB, "
            f"ratio {mem_pair[key] / mem_base[key]:.2f}x"
        )


if __name__ == "__main__":
    main()
