"""Train an NLA for a new base model and layer, stage by stage, with hubkit's library calls.

    python examples/train_new_model.py --model gemma3-270m --layer 9 --out runs/gemma3-270m-L9

`--model` is an offline registry name (`hubkit models list`), a local model folder or a Hub id.
The labels come from `--labeler` (default: the base itself; point it at a stronger local model, or
use `hubkit label --backend openai` against any OpenAI-compatible server). Each stage resumes when
run again. The recipe is written to OUT/recipe.yaml: edit it and continue with `hubkit train`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hubkit import arch, models
from hubkit.data import build_from_dirs, label_table, load_corpus, split_table
from hubkit.data.extract import ExtractConfig, default_layer, extract
from hubkit.data.labelers import TransformersLabeler
from hubkit.eval.generation import Generation
from hubkit.eval.headline import headline
from hubkit.eval.pair_eval import evaluate_pair
from hubkit.pair import NLAPair
from hubkit.train import RunOptions, train_ar, train_av
from hubkit.train.recipe import recipe_from_dict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--layer", type=int, default=None, help="default: two thirds deep")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--labeler", default=None, help="labeling model (default: --model)")
    p.add_argument("--docs", type=int, default=80, help="documents of the bundled corpus to use")
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()
    data, out = args.out / "data", args.out

    # stage 0-3: activations at the layer, split by document, labeled, built into tables
    model, tok = models.load(args.model, dtype=torch.float32)
    layer = args.layer if args.layer is not None else default_layer(arch.num_layers(model))
    acts = extract(
        load_corpus("bundled", limit=args.docs),
        model,
        tok,
        data / "activations.parquet",
        ExtractConfig(layer=layer, positions_per_doc=2),
        base_model=args.model,
    )
    split_table(acts, data / "splits", {"av_sft": 0.35, "ar_sft": 0.35, "rl": 0.1, "eval": 0.2})
    if args.labeler is None:
        labeler = TransformersLabeler(model, tok, f"transformers:{args.model}", max_new_tokens=48)
    else:
        labeler = TransformersLabeler.from_pretrained(args.labeler, max_new_tokens=48)
    for name in ("av_sft", "ar_sft"):
        label_table(data / "splits" / f"{name}.parquet", data / "labeled" / f"{name}.parquet", labeler)
    tables = build_from_dirs(data / "splits", data / "labeled", data / "built")
    del model, labeler

    # training: one recipe, two stages (add a `grpo:` section and call train_grpo for RL)
    lora = {"kind": "lora", "r": 16, "alpha": 32, "target_modules": "all-linear"}
    optim = {"lr": 5e-4, "schedule": "cosine", "warmup_steps": 5}
    stage = {
        "steps": args.steps,
        "checkpoint_every": args.steps,
        "max_length": 64,
        "adapter": lora,
        "optim": optim,
    }
    recipe = recipe_from_dict(
        {
            "base_model": args.model,
            "layer": layer,
            "output_dir": str(out / "run"),
            "nla": {"injection_scale": "embedding_norm"},  # measured on this base, recorded as a number
            "av": {"data": str(tables["av_sft"]), "micro_batch_size": 4, **stage},
            "ar": {"data": str(tables["ar_sft"]), "micro_batch_size": 8, **stage},
        }
    )
    recipe.save(out / "recipe.yaml")
    ar_dir = train_ar(recipe, RunOptions(resume=True))
    av_dir = train_av(recipe, RunOptions(resume=True))

    # held-out evaluation: eval.json, rows.parquet and plots
    pair = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    report = evaluate_pair(
        pair,
        tables["eval"],
        out_dir=out / "eval",
        train_tables=[tables["av_sft"], tables["ar_sft"]],
        checkpoints={"av": av_dir, "ar": ar_dir},
        generation=Generation(max_new_tokens=48),
    )
    print(headline(report))
    print(f"eval: {out / 'eval' / 'eval.json'}; checkpoints: {av_dir}, {ar_dir}")


if __name__ == "__main__":
    main()
