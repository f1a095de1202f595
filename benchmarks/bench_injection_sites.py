"""Where and at what scale should the AV inject its vector? Four choices side by side, one run.

On the offline default base (SmolLM2-135M, layer 20 unless --layer), with `context:<n>` labels and
held-out documents:

    embed_embnorm   embedding replacement at the marker, scale = median token-embedding norm
    embed_actnorm   embedding replacement, scale = median norm of the training vectors
    resid_block1    norm-matched residual addition at the output of block 1
    resid_layer     norm-matched residual addition at the output of the extraction layer

One AR is trained once (it does not depend on the injection); each AV is trained for the same number
of steps from the same rows, then evaluated on the held-out rows: pair identification top-1 (the
reconstruction picks out its own vector among the N held-out vectors; chance 1/N) and the mean
cosine of the round trip. The AR alone on the true labels is reported too (its ceiling).

    OMP_NUM_THREADS=1 python3 benchmarks/bench_injection_sites.py --out /tmp/injection-sites

Writes OUT/result_<variant>.json and prints a table. `--stage ar|av|eval` runs one part: the AR and
the AVs train independently, so they can run side by side, then `--stage eval` evaluates.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = ("resid_layer", "embed_embnorm", "embed_actnorm", "resid_block1")
AV_TEMPLATE = (
    "Here is an activation vector: <vector>{injection_char}</vector>\n"
    "Explain what it encodes inside <explanation></explanation> tags."
)


def nla_block(variant: str, layer: int, act_norm: float) -> dict:
    base = {"mse_scale": "sqrt_d_model", "av_template": AV_TEMPLATE}
    if variant == "embed_embnorm":
        return {**base, "injection_scheme": "embedding_replace", "injection_scale": "embedding_norm"}
    if variant == "embed_actnorm":
        return {**base, "injection_scheme": "embedding_replace", "injection_scale": float(act_norm)}
    if variant == "resid_block1":
        return {**base, "injection_scheme": "residual_add", "injection_scale": None, "injection_block": 1}
    if variant == "resid_layer":
        return {**base, "injection_scheme": "residual_add", "injection_scale": None, "injection_block": layer}
    raise ValueError(variant)


def recipe(args, run: Path, built: Path, nla: dict, dtype: str):
    from hubkit.train.recipe import recipe_from_dict

    adapter = {"kind": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"}
    data = {
        "base_model": args.model,
        "layer": args.layer,
        "output_dir": str(run),
        "seed": 0,
        "dtype": dtype,
        "nla": nla,
        "av": {
            "data": str(built / "av_sft.parquet"),
            "steps": args.av_steps,
            "micro_batch_size": args.av_batch,
            "checkpoint_every": args.av_steps,
            "max_length": 48,
            "adapter": adapter,
            "optim": {"lr": args.lr, "schedule": "cosine", "warmup_steps": 5},
        },
        "ar": {
            "data": str(built / "ar_sft.parquet"),
            "steps": args.ar_steps,
            "micro_batch_size": args.ar_batch,
            "checkpoint_every": args.ar_steps,
            "max_length": 48,
            "head_lr": 1e-3,
            "adapter": adapter,
            "optim": {"lr": args.lr, "schedule": "cosine", "warmup_steps": 5},
        },
    }
    return recipe_from_dict(data, "bench_injection_sites")


def prepare_data(args, out: Path) -> Path:
    from hubkit import models
    from hubkit.data.build import build_from_dirs
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, extract
    from hubkit.data.label import label_table
    from hubkit.data.labelers import ContextLabeler
    from hubkit.data.split import split_table

    built = out / "data" / "built"
    if (built / "eval.parquet").is_file():
        return built
    corpus = load_corpus("bundled")
    model, tok = models.load(args.model, dtype=torch.float32)
    cfg = ExtractConfig(layer=args.layer, positions_per_doc=args.positions, min_position=8, max_length=128)
    act = extract(corpus, model, tok, out / "data" / "activations.parquet", cfg, base_model=args.model)
    del model
    fractions = {"av_sft": 0.39, "ar_sft": 0.39, "rl": 0.02, "eval": 0.2}
    splits = split_table(act, out / "data" / "splits", fractions, 0)
    lab = ContextLabeler(args.words)
    for name in ("av_sft", "ar_sft", "eval"):
        label_table(splits[name], out / "data" / "labeled" / f"{name}.parquet", lab)
    build_from_dirs(out / "data" / "splits", out / "data" / "labeled", built)
    return built


def evaluate(av_dir: Path | None, ar_dir: Path, built: Path, n: int, tokens: int) -> dict:
    from hubkit.eval.identification import identification
    from hubkit.eval.table import EvalTable
    from hubkit.pair import NLAPair
    from hubkit.reconstructor import ActivationReconstructor

    table = EvalTable.read(built / "eval.parquet")
    idx = torch.arange(min(n, len(table)))
    v = table.vectors[idx]
    t0 = time.perf_counter()
    if av_dir is None:  # the AR alone, on the true labels
        ar = ActivationReconstructor.from_pretrained(ar_dir)
        texts = [table.explanations[i] for i in idx.tolist()]
        v_hat = ar.reconstruct(texts)
        empty = ar.reconstruct([""] * len(texts))
    else:
        pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
        res = pair.round_trip(v, batch_size=16, max_new_tokens=tokens)
        texts, v_hat = res.explanations, res.reconstructions
        empty = pair.ar.reconstruct([""] * len(texts))
    ident = identification(v.numpy(), v_hat.float().numpy())
    cos = torch.nn.functional.cosine_similarity(v.float(), v_hat.float(), dim=-1)
    cos_empty = torch.nn.functional.cosine_similarity(v.float(), empty.float(), dim=-1)
    t1 = ident.at(1)
    return {
        "n": len(idx),
        "top1": t1.accuracy,
        "top1_hits": t1.hits,
        "chance": t1.chance,
        "x_chance": t1.accuracy / t1.chance,
        "mean_cos": float(cos.mean()),
        "real_minus_empty": float((cos - cos_empty).mean()),
        "distinct": len(set(texts)),
        "examples": texts[:4],
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/injection-sites"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--layer", type=int, default=20)
    p.add_argument("--positions", type=int, default=4)
    p.add_argument("--words", type=int, default=10)
    p.add_argument("--ar-steps", type=int, default=150)
    p.add_argument("--ar-batch", type=int, default=16)
    p.add_argument("--av-steps", type=int, default=100)
    p.add_argument("--av-batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--eval-tokens", type=int, default=40)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--stage",
        default="all",
        choices=("all", "ar", "av", "eval"),
        help="run one part (parts can run side by side)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from hubkit.data.tables import read_table, vectors_numpy
    from hubkit.precision import resolve_dtype_name
    from hubkit.train.loop import RunOptions
    from hubkit.train.sft_ar import train_ar
    from hubkit.train.sft_av import train_av
    from hubkit.train.trajectory import latest_step

    dtype = resolve_dtype_name(args.dtype, "cpu")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    built = prepare_data(args, out)
    table, side = read_table(built / "av_sft.parquet", ("vector",))
    train_v = vectors_numpy(table.column("vector"), side.extraction.d_model)
    act_norm = float(np.median(np.linalg.norm(train_v, axis=1)))
    variants = args.variants.split(",")

    def save(name: str, data: dict) -> None:
        data["settings"] = {**{k: str(v) for k, v in vars(args).items()}, "dtype_resolved": dtype}
        data["act_norm_median"] = act_norm
        (out / f"result_{name}.json").write_text(json.dumps(data, indent=2) + "\n")

    ar_run = out / "ar"
    if args.stage in ("all", "ar") and not (out / "result_ar_only.json").is_file():
        t0 = time.perf_counter()
        rec = recipe(args, ar_run, built, nla_block("resid_layer", args.layer, act_norm), dtype)
        train_ar(rec, RunOptions(resume=True, quiet=True, device="cpu"))
        train_s = time.perf_counter() - t0
        res = evaluate(None, latest_step(ar_run / "ar"), built, args.eval_rows, 0)
        save("ar_only", {**res, "train_seconds": train_s})
        print("ar_only", json.dumps(res), flush=True)
    if args.stage in ("all", "av"):  # AV training needs no AR: it can run beside the AR's
        for variant in variants:
            t0 = time.perf_counter()
            rec = recipe(args, out / variant, built, nla_block(variant, args.layer, act_norm), dtype)
            train_av(rec, RunOptions(resume=True, quiet=True, device="cpu", allow_ood_injection=True))
            (out / variant / "train_seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    if args.stage in ("all", "eval"):
        ar_dir = latest_step(ar_run / "ar")
        for variant in variants:
            if (out / f"result_{variant}.json").is_file() or latest_step(out / variant / "av") is None:
                continue
            res = evaluate(
                latest_step(out / variant / "av"), ar_dir, built, args.eval_rows, args.eval_tokens
            )
            save(variant, res)
            print(variant, json.dumps(res), flush=True)
    print(
        f"\n{'variant':<14} {'top-1':>7} {'x chance':>9} {'mean cos':>9} {'real-empty':>11} {'distinct':>9}"
    )
    for name in ["ar_only", *variants]:
        path = out / f"result_{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        print(
            f"{name:<14} {r['top1']:>7.3f} {r['x_chance']:>9.1f} {r['mean_cos']:>9.3f} "
            f"{r['real_minus_empty']:>+11.3f} {r['distinct']:>6}/{r['n']}"
        )


if __name__ == "__main__":
    main()
