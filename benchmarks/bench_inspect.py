"""`hubkit inspect` of N tokens vs `round-trip` on the same N vectors, side by side on SmolLM2.

    python benchmarks/bench_inspect.py [--n 200] [--new-tokens 32] [--spliced-loss] [--json out.json]

Both sides use one untrained LoRA pair over the real SmolLM2-135M (`hubkit.testing.write_real_pair`),
loaded once, with the same dtype (chosen from the hardware), the same AV batch and greedy decoding.
`inspect` does everything `round-trip` does plus the base's forward over the text, the baseline B
measured on the bundled corpus (32 documents), the per-token records, the transcript and the page (and,
with --spliced-loss, the spliced loss); `round-trip` is given the vectors `inspect` read. The issue's
target: inspect within 2x the time of round-trip.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from hubkit.testing import write_real_pair


def long_text(tokenizer, n: int) -> str:
    """Bundled-corpus documents joined until the text has at least `n` tokens (BOS included)."""
    from hubkit.data.corpus import BUNDLED, load_corpus

    parts: list[str] = []
    for doc in load_corpus(BUNDLED).documents:
        parts.append(doc.text)
        if len(tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"]) + 1 >= n:
            return " ".join(parts)
    raise SystemExit(f"the bundled corpus has fewer than {n} tokens")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--layer", type=int, default=20)
    ap.add_argument("--spliced-loss", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from hubkit import NLAPair, precision

    threads = precision.apply_thread_policy()
    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, _ = write_real_pair("smollm2-135m", Path(tmp), args.layer)
        pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
        text = long_text(pair.av.tokenizer, args.n)
        pair.round_trip(torch.randn(2, pair.av.meta.d_model) * 50, max_new_tokens=4)  # warm-up
        gen = {"max_new_tokens": args.new_tokens}
        t0 = time.perf_counter()
        ins = pair.inspect(text, positions=list(range(args.n)), spliced_loss=args.spliced_loss, **gen)
        ins.save(Path(tmp) / "inspect")
        t_inspect = time.perf_counter() - t0
        print(f"  inspect: {t_inspect:.1f} s for {args.n} tokens", flush=True)
        t0 = time.perf_counter()
        rt = pair.round_trip(ins.vectors, **gen)
        t_rt = time.perf_counter() - t0
        print(f"  round-trip: {t_rt:.1f} s for the same {args.n} vectors", flush=True)
    same = sum(a == b for a, b in zip(rt.explanations, ins.round_trip.explanations))
    res = {
        "n": args.n,
        "new_tokens": args.new_tokens,
        "dtype": str(next(pair.av.model.parameters()).dtype).removeprefix("torch."),
        "threads": threads,
        "spliced_loss": args.spliced_loss,
        "inspect_s": t_inspect,
        "round_trip_s": t_rt,
        "ratio": t_inspect / t_rt,
        "same_explanations": f"{same}/{args.n}",
        "max_cos_diff": float((rt.cos - ins.round_trip.cos).abs().max()),
    }
    print(
        f"inspect {t_inspect:.1f} s vs round-trip {t_rt:.1f} s on the same {args.n} vectors: "
        f"ratio {res['ratio']:.2f}x ({res['dtype']}, {threads} threads; same explanations {res['same_explanations']})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
