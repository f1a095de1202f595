"""Where a batched round trip's time goes on this CPU: is anything left besides the model's own forward?

    python benchmarks/bench_decode_overhead.py [--n 32] [--new-tokens 48] [--threads 2]

Side by side, in one run, on SmolLM2-135M (bf16 and fp32), `--n` prompts of 70 random tokens:

* ``generate``: ``model.generate`` greedy (what `ActivationVerbalizer.explain` calls);
* ``hand loop``: the least a greedy decoder can do (one forward per token over the KV cache, argmax,
  no logits processors, no attention mask): what is left is the model's forward;
* with the untrained LoRA AV of ``bench_round_trip.py``: ``explain`` with the adapter active vs with
  its delta merged into copies of the weights and the adapter disabled (the weights are put back).

Each pair is checked for identical greedy tokens. The ratios say how much a hand-written decoder or
merging the adapter for generation could save.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def hand_loop(model, ids: torch.Tensor, max_new: int, stop_ids: list[int]) -> torch.Tensor:
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache, stops = out.past_key_values, torch.tensor(stop_ids)
    done = torch.zeros(len(ids), dtype=torch.bool)
    toks = []
    for step in range(max_new):
        nxt = out.logits[:, -1].argmax(-1)
        toks.append(nxt)
        done |= torch.isin(nxt, stops)
        if bool(done.all()) or step == max_new - 1:
            break
        out = model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True, logits_to_keep=1)
    return torch.stack(toks, 1)


@contextlib.contextmanager
def merged(model, name: str):
    """The LoRA adapter `name` merged into copies of its base weights; the originals put back after."""
    from peft.tuners.lora import LoraLayer

    saved = []
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoraLayer) and name in m.lora_A:
                base = m.get_base_layer()
                saved.append((base, base.weight))
                w = base.weight
                base.weight = nn.Parameter(w + m.get_delta_weight(name).to(w.dtype), requires_grad=False)
    try:
        with model.disable_adapter():
            yield
    finally:
        for base, w in saved:
            base.weight = w


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def generate_vs_loop(dtype: torch.dtype, n: int, t: int) -> str:
    from hubkit import models

    model, tok = models.load("smollm2-135m", dtype=dtype)
    ids = torch.randint(100, 1000, (n, 70), generator=torch.Generator().manual_seed(0))
    stop = [tok.eos_token_id]
    with torch.no_grad():
        model.generate(
            input_ids=ids[:2], attention_mask=torch.ones_like(ids[:2]), max_new_tokens=2, pad_token_id=0
        )
        ref, t_gen = timed(
            lambda: model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=t,
                eos_token_id=stop,
                pad_token_id=0,
            )
        )
    got, t_loop = timed(lambda: hand_loop(model, ids, t, stop))
    same = sum(ref[i, 70 : 70 + got.shape[1]].tolist() == got[i].tolist() for i in range(n))
    return f"{str(dtype):15} generate {t_gen:6.2f} s  hand loop {t_loop:6.2f} s  ratio {t_gen / t_loop:.2f}  same {same}/{n}"


def lora_vs_merged(av_dir: Path, ar_dir: Path, dtype: str, n: int, t: int) -> str:
    from hubkit import NLAPair

    av = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, dtype=dtype).av
    v = torch.randn(n, av.meta.d_model, generator=torch.Generator().manual_seed(0))
    av.explain(v[:2], max_new_tokens=2)
    a, t_lora = timed(lambda: av.explain(v, batch_size=n, max_new_tokens=t))
    name, av.adapter_name = av.adapter_name, None
    with merged(av.model, name):
        b, t_merged = timed(lambda: av.explain(v, batch_size=n, max_new_tokens=t))
    av.adapter_name = name
    same = sum(x == y for x, y in zip(a, b))
    return f"explain {dtype:8} LoRA active {t_lora:6.2f} s  merged {t_merged:6.2f} s  ratio {t_lora / t_merged:.2f}  same {same}/{n}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from hubkit.testing import write_real_pair

    print(f"{args.n} rows, {args.new_tokens} new tokens, {args.threads} threads", flush=True)
    for dtype in (torch.bfloat16, torch.float32):
        print(generate_vs_loop(dtype, args.n, args.new_tokens), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, _ = write_real_pair("smollm2-135m", Path(tmp), 20)
        for dtype in ("bfloat16", "float32"):
            print(lora_vs_merged(av_dir, ar_dir, dtype, args.n, args.new_tokens), flush=True)


if __name__ == "__main__":
    main()
