"""Stage 0 with early exit vs a full forward with all hidden states, same model, same batches, one run.

Two comparisons on the bundled corpus:

1. forward only: `hubkit.arch.hidden_at_block(model, L, ...)` (stops after block L) against
   ``model(..., output_hidden_states=True).hidden_states[L + 1]`` (all blocks, final norm, LM head);
2. the whole stage (`hubkit.data.extract.extract`: tokenize, sample, forward, write parquet) with
   its early exit, against the same stage with the forward swapped for the full one.

The two ways run back to back per batch (forward) or per round (stage), alternating order, so load
from other processes hits both alike. Forward-only timings are given in wall-clock and in this
process's CPU time (robust when other processes share the cores). Throughput counts real
(unpadded) tokens. The two ways' vectors are compared too (they must agree).

    python benchmarks/bench_extract.py [--model smollm2-135m] [--docs 24] [--repeats 5] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hubkit import arch, models
from hubkit.data import extract as stage0
from hubkit.data.corpus import load_corpus


def padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of right-padded `rows`, as extraction batches them."""
    return arch.right_padded([torch.tensor(r) for r in rows], pad_id)


def full_forward(model, block: int, **inputs) -> torch.Tensor:
    """The naive way: run every block (and the LM head), keep all hidden states, pick one."""
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[block + 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layer", type=int, default=None, help="default: two thirds deep")
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="forward-only runs per batch and way")
    parser.add_argument("--rounds", type=int, default=3, help="whole-stage runs per way")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = models.load(args.model, dtype=getattr(torch, args.dtype))
    n_layers = arch.num_layers(model)
    layer = stage0.default_layer(n_layers) if args.layer is None else args.layer
    corpus = load_corpus("bundled", limit=args.docs)
    ids = stage0.tokenize(tok, [d.text for d in corpus.documents], True, args.max_length)
    ids.sort(key=len, reverse=True)
    batches = [
        padded(ids[i : i + args.batch_size], stage0.pad_id(tok)) for i in range(0, len(ids), args.batch_size)
    ]
    n_tokens = sum(len(x) for x in ids)
    print(
        f"{args.model}: {n_layers} blocks, layer {layer}, d={arch.hidden_size(model)}, {args.dtype}, "
        f"{torch.get_num_threads()} threads; {len(ids)} docs, {n_tokens} tokens, {len(batches)} batches"
    )

    # The two ways agree (real positions only).
    worst = 0.0
    for input_ids, mask in batches[:2]:
        early = arch.hidden_at_block(model, layer, input_ids=input_ids, attention_mask=mask)
        full = full_forward(model, layer, input_ids=input_ids, attention_mask=mask)
        real = mask.bool()
        worst = max(worst, float((early[real].float() - full[real].float()).abs().max()))
    print(f"max |early - full| over real tokens: {worst:.3g}")

    ways = {
        "early exit (hidden_at_block)": lambda i, m: arch.hidden_at_block(
            model, layer, input_ids=i, attention_mask=m
        ),
        "full forward (all hidden states)": lambda i, m: full_forward(
            model, layer, input_ids=i, attention_mask=m
        ),
    }
    for fn in ways.values():  # warm-up
        fn(*batches[-1])
    # Each batch runs `repeats` times per way, the two ways alternating. Wall time and this process's
    # CPU time are both kept: on a shared machine the wall clock also counts waiting for other
    # processes, CPU time counts only the work done (with 1 thread it equals wall time on an idle core).
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    spent = {(name, c): [0.0] * args.repeats for name in ways for c in clocks}
    for b, (input_ids, mask) in enumerate(batches):
        for r in range(args.repeats):
            for name in list(ways)[:: 1 if (r + b) % 2 == 0 else -1]:
                start = {c: f() for c, f in clocks.items()}
                ways[name](input_ids, mask)
                for c, f in clocks.items():
                    spent[name, c][r] += f() - start[c]
    early_name, full_name = ways
    print(f"\nforward only ({args.repeats} passes over all batches per way; median pass, best in brackets):")
    for c in clocks:
        for name in ways:
            ts = spent[name, c]
            print(
                f"  {c:4s} {name:34s} {n_tokens / statistics.median(ts):7.0f} tok/s  [{n_tokens / min(ts):.0f}]"
            )
        ratio = statistics.median(spent[full_name, c]) / statistics.median(spent[early_name, c])
        print(f"  {c:4s} speed-up: {ratio:.2f}x")

    # The whole stage 0, once per way per round, on the same corpus and settings.
    config = stage0.ExtractConfig(
        layer=layer, max_length=args.max_length, batch_size=args.batch_size, docs_per_chunk=args.docs
    )
    original = stage0.arch.hidden_at_block
    stage_times: dict[str, list[float]] = {"early": [], "full": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way in ("early", "full"):
                stage0.arch.hidden_at_block = original if way == "early" else full_forward
                try:
                    t0 = time.perf_counter()
                    stage0.extract(
                        corpus, model, tok, Path(tmp) / f"{way}{r}.parquet", config, base_model=args.model
                    )
                    stage_times[way].append(time.perf_counter() - t0)
                finally:
                    stage0.arch.hidden_at_block = original
    e, f = (n_tokens / statistics.median(stage_times[k]) for k in ("early", "full"))
    ratios = [b / a for a, b in zip(stage_times["early"], stage_times["full"])]
    print("\nwhole stage 0 (tokenize, sample, forward, write parquet; median of rounds, wall clock):")
    print(f"  early exit   {e:9.0f} tok/s\n  full forward {f:9.0f} tok/s")
    print(f"  speed-up: {e / f:.2f}x; per round {' '.join(f'{x:.2f}' for x in ratios)}")


if __name__ == "__main__":
    main()
