"""Round trip with each generation engine vs the per-row loop, side by side in one run.

    python benchmarks/bench_engines.py [--n 32 256] [--new-tokens 48] [--per-row-max 32] [--remote URL]
                                       [--eval]

One untrained adapter pair on SmolLM2-135M (LoRA with random B, as in bench_round_trip.py), fp32,
greedy, the same vectors for every engine:

* ``per-row``: the loop of published examples, one ``explain`` + one ``reconstruct`` per vector.
  Above ``--per-row-max`` vectors it is timed on the first ``--per-row-max`` and scaled linearly
  (rows are independent and equally long), and the table says so.
* ``transformers``: hubkit's batched round trip (`NLAPair.round_trip`, batch ``--batch-size``).
* ``vllm``: the same round trip with ``engine="vllm"`` (AV generation in vLLM from the prompt
  embeddings, its LoRA support for the adapter; the AR still runs in transformers). Its start-up
  (spawning workers, loading weights) is timed apart, on a 2-vector warm-up call.
* ``remote`` (with ``--remote``): ``engine=URL`` against a running ``vllm serve``.

With ``--eval``, the same for a whole eval (`hubkit.eval.evaluate_pair` with ``engine=``: generation,
the AR on every distinct text and the four controls, statistics, eval.json; plots off) against the
per-row eval loop of ``bench_eval.py`` (one generate and one AR call per row and per control).

The load average is printed with every timing: the machine may be shared.
Needs the `vllm` extra; must run as a script (vLLM spawns its worker: ``__main__`` guard below).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def timed(fn):
    before = load()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, f"{before} → {load()}"


def per_row(pair, v: torch.Tensor, new_tokens: int) -> list[str]:
    texts = [pair.av.explain(v[i : i + 1], max_new_tokens=new_tokens)[0] for i in range(len(v))]
    for t in texts:
        pair.ar.reconstruct([t])
    return texts


def run(args: argparse.Namespace, av_dir: Path, ar_dir: Path) -> list[dict]:
    from hubkit import NLAPair, engines

    torch.set_num_threads(args.threads)
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir, dtype="float32")
    d = pair.av.meta.d_model
    pair.round_trip(torch.randn(2, d), max_new_tokens=4)  # transformers warm-up
    _, startup, startup_load = timed(
        lambda: pair.round_trip(torch.randn(2, d), max_new_tokens=4, engine="vllm")
    )
    rows = [
        {"n": "-", "engine": "vllm start-up", "s": startup, "load": startup_load, "note": "once per process"}
    ]
    kw = dict(max_new_tokens=args.new_tokens)
    for n in args.n:
        v = torch.randn(n, d, generator=torch.Generator().manual_seed(n))
        res = {}
        res["vllm"] = timed(lambda v=v: pair.round_trip(v, batch_size=args.batch_size, engine="vllm", **kw))
        if args.remote:
            res["remote"] = timed(
                lambda v=v: pair.round_trip(v, batch_size=args.batch_size, engine=args.remote, **kw)
            )
        res["transformers"] = timed(lambda v=v: pair.round_trip(v, batch_size=args.batch_size, **kw))
        m = min(n, args.per_row_max)
        texts, t_loop, loop_load = timed(lambda v=v, m=m: per_row(pair, v[:m], args.new_tokens))
        ref = res["transformers"][0].explanations
        note_loop = "measured" if m == n else f"{m} rows timed, x{n / m:g}"
        rows.append({"n": n, "engine": "per-row", "s": t_loop * n / m, "load": loop_load, "note": note_loop,
                     "same": f"{sum(a == b for a, b in zip(texts, ref))}/{m}"})  # fmt: skip
        for name, (rt, t, ld) in res.items():
            rows.append({"n": n, "engine": name, "s": t, "load": ld, "note": f"mean cos {rt.mean_cos:.4f}",
                         "same": f"{sum(a == b for a, b in zip(rt.explanations, ref))}/{n}"})  # fmt: skip
        report(rows, args)  # the table so far: a long run shows its first sizes early
        sys.stdout.flush()
        if args.eval:
            rows += eval_rows(args, pair, v)
            report(rows, args)
            sys.stdout.flush()
    engines.close_engines()
    return rows


def eval_rows(args: argparse.Namespace, pair, v: torch.Tensor) -> list[dict]:
    """`evaluate_pair` on each engine and the per-row eval loop, on the eval table of vectors `v`."""
    from bench_eval import per_row_loop

    from hubkit.eval.generation import Generation
    from hubkit.eval.pair_eval import evaluate_pair

    n, out = len(v), []
    with tempfile.TemporaryDirectory() as tmp:
        table = eval_table(Path(tmp) / "eval.parquet", v)
        gen = Generation(max_new_tokens=args.new_tokens, batch_size=args.batch_size)
        reps = {
            name: timed(
                lambda name=name: evaluate_pair(
                    pair, table, out_dir=Path(tmp) / name, generation=replace(gen, engine=name), n_boot=200, plots=False
                )
            )
            for name in ("vllm", "transformers")
        }
        ref = reps["transformers"][0]
        ref_texts = ref.rows.column("explanation").to_pylist()
        m = min(n, args.per_row_max)
        controls = {k: t[:m] for k, t in ref.figures.content_sensitivity.av.texts.items()}
        (texts, *_), t_loop, loop_load = timed(
            lambda: per_row_loop(pair, v[:m], controls, args.new_tokens, 0)
        )
        note = "measured" if m == n else f"{m} rows timed, x{n / m:g}"
        out.append({"n": n, "engine": "eval per-row", "s": t_loop * n / m, "load": loop_load, "note": note,
                    "same": f"{sum(a == b for a, b in zip(texts, ref_texts))}/{m}"})  # fmt: skip
        for name, (rep, t, ld) in reps.items():
            got = rep.rows.column("explanation").to_pylist()
            cos = rep.figures.round_trip.all.cos.mean
            out.append({"n": n, "engine": f"eval {name}", "s": t, "load": ld, "note": f"mean cos {cos:.4f}",
                        "same": f"{sum(a == b for a, b in zip(got, ref_texts))}/{n}"})  # fmt: skip
    return out


def eval_table(path: Path, v: torch.Tensor) -> Path:
    """An eval table of vectors `v` (two rows per document) in the data pipeline's format."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = v.float().numpy()
    cols = {
        "doc_id": [f"doc{i // 2}" for i in range(len(a))],
        "position": list(range(len(a))),
        "prefix": [f"row {i}" for i in range(len(a))],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), a.shape[1]),
    }
    pq.write_table(pa.table(cols), str(path))
    return path


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"round trip, SmolLM2-135M fp32, {args.new_tokens} new tokens, greedy, LoRA AV+AR; torch threads "
        f"{args.threads} (vLLM CPU: its own worker, bound to the cores it chose); load average 1/5/15 min"
    )
    print(
        f"{'N':>4}  {'engine':<17} {'seconds':>9} {'vs per-row':>10} {'vs transf.':>10}  same text  load avg  note"
    )
    base: dict = {}
    for r in rows:
        if r["engine"] in ("per-row", "transformers", "eval per-row", "eval transformers"):
            base[(r["n"], r["engine"])] = r["s"]
    for r in rows:
        kind = "eval " if r["engine"].startswith("eval") else ""
        loop, tf = base.get((r["n"], kind + "per-row")), base.get((r["n"], kind + "transformers"))
        vs_loop = f"{loop / r['s']:.1f}x" if loop else ""
        vs_tf = f"{tf / r['s']:.1f}x" if tf else ""
        print(
            f"{r['n']:>4}  {r['engine']:<17} {r['s']:9.1f} {vs_loop:>10} {vs_tf:>10}  "
            f"{r.get('same', ''):>9}  {r['load']}  {r['note']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--per-row-max", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--remote", default=None, help="URL of a running `vllm serve --enable-prompt-embeds`.")
    ap.add_argument("--layer", type=int, default=20)
    ap.add_argument("--eval", action="store_true", help="Also time a whole eval on each engine vs per-row.")
    args = ap.parse_args()
    from hubkit.testing import write_real_pair

    with tempfile.TemporaryDirectory() as tmp:
        av_dir, ar_dir, _ = write_real_pair("smollm2-135m", Path(tmp), args.layer)
        run(args, av_dir, ar_dir)


if __name__ == "__main__":
    main()
