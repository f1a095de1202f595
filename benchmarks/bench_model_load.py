"""Offline default models: one-off GGUF conversion vs cached bf16 load, plus sanity numbers.

Measures, per registry model: conversion time (`prepare(force=True)`), cached load time
(median of 3 `load` calls), median token-embedding norm after the model's own scaling,
and greedy generation (text and tokens/s) for a short prompt (chat template when the
model has one).

    python benchmarks/bench_model_load.py [--cache DIR] [--models smollm2-135m gemma3-270m] [--json out.json]

Without --cache a temporary cache is used, so the conversion is really measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hubkit import models
from hubkit.scale_lint import embedding_norm

PROMPT = "What is the capital of France?"


def bench(name: str, cache: Path, new_tokens: int = 40) -> dict:
    spec = models.get_spec(name)
    t0 = time.perf_counter()
    path = models.prepare(name, cache_dir=cache, force=True)
    convert_s = time.perf_counter() - t0

    load_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        model, tok = models.load(name, cache_dir=cache)
        load_s.append(time.perf_counter() - t0)

    if spec.chat_template:
        text = tok.apply_chat_template(
            [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
        )
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    else:
        ids = tok("Question: " + PROMPT + "\nAnswer:", return_tensors="pt").input_ids
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
        gen_s = time.perf_counter() - t0
    n_new = out.shape[1] - ids.shape[1]
    return {
        "model": name,
        "path": str(path),
        "convert_s": round(convert_s, 2),
        "load_s_median": round(statistics.median(load_s), 3),
        "embed_norm_median": round(embedding_norm(model), 3),
        "embed_scale": float(getattr(model.get_input_embeddings(), "embed_scale", 1.0)),
        "generation": tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True),
        "gen_tokens_per_s": round(n_new / gen_s, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--models", nargs="+", default=list(models.REGISTRY))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubkit-bench-") as tmp:
        cache = args.cache or Path(tmp)
        rows = [bench(m, cache) for m in args.models]
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
