"""Wall time of short real AV and AR training runs on SmolLM2-135M (layer 20), through `hubkit train`'s code.

Side by side, in one run:
  * AV SFT, LoRA r=16 (the recipe's kind) vs full fine-tuning: seconds per optimiser step.
  * AR SFT, hubkit's way (base truncated to K+1 = 21 of 30 blocks, forward stopped at block K) vs the
    naive way (all 30 blocks + LM head with ``output_hidden_states=True``, then pick block K): seconds per step.

    python benchmarks/bench_train_smollm2.py [--steps 6] [--rows 16] [--threads N] [--json out.json]

Vectors are real layer-20 activations of SmolLM2 on a few sentences; explanations are short strings.
Timings exclude the first step (warm-up) and are medians of the rest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hubkit import arch, models
from hubkit.metrics import normalised_mse
from hubkit.reconstructor import build_ar_ids, last_token
from hubkit.schema import to_dict
from hubkit.train.loop import RunOptions
from hubkit.train.recipe import load_recipe, recipe_from_dict
from hubkit.train.sft_ar import train_ar
from hubkit.train.sft_av import train_av

LAYER = 20
SENTENCES = [
    "The cat sat on the mat and looked at the door.",
    "Paris is the capital of France, and the Seine runs through it.",
    "def add(x, y): return x + y  # a tiny python function",
    "Rain fell all night; by morning the river had burst its banks.",
    "The stock market closed higher on Friday after a volatile week.",
    "She played the violin in the orchestra for twenty years.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "The treaty was signed in 1648, ending thirty years of war.",
]
EXPLANATIONS = [
    "a household animal resting on a floor covering",
    "a European capital city and its river",
    "source code defining an addition function",
    "weather causing a flood",
    "financial news about share prices",
    "a musician and a string instrument",
    "biology: how plants make food",
    "history: the end of a long war",
]


def make_tables(folder: Path, rows: int) -> tuple[Path, Path]:
    model, tok = models.load("smollm2-135m", dtype=torch.float32)
    vecs = []
    for s in SENTENCES:
        ids = tok(s, return_tensors="pt")["input_ids"]
        h = arch.hidden_at_block(model, LAYER, input_ids=ids)[0]
        vecs += [h[i] for i in range(1, h.shape[0])]
    vectors = torch.stack(vecs[:rows]).float()
    texts = [EXPLANATIONS[i % len(EXPLANATIONS)] for i in range(len(vectors))]
    col = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.flatten().numpy(), pa.float32()), vectors.shape[1]
    )
    n = len(texts)
    base = {"doc_id": [f"d{i}" for i in range(n)], "position": list(range(n))}
    av = folder / "av_sft.parquet"
    ar = folder / "ar_sft.parquet"
    pq.write_table(pa.table({**base, "vector": col, "explanation": texts}), av)
    pq.write_table(pa.table({**base, "explanation": texts, "vector": col}), ar)
    return av, ar


def stage(steps: int, data: Path, kind: str) -> dict:
    return {
        "data": str(data),
        "steps": steps,
        "micro_batch_size": 4,
        "grad_accum": 1,
        "checkpoint_every": steps,
        "max_length": 32,
        "adapter": {"kind": kind, "r": 16, "alpha": 32},
        "optim": {"lr": 1e-4},
    }


def run(fn, recipe, out: Path) -> dict:
    t0 = time.perf_counter()
    fn(recipe, RunOptions(out=str(out), quiet=True))
    wall = time.perf_counter() - t0
    secs = [json.loads(line)["seconds"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "wall_s": wall,
        "step_s": statistics.median(secs[1:]),
        "first_step_s": secs[0],
        "steps": len(secs),
    }


def naive_ar(steps: int, data: Path) -> dict:
    """The AR step without early exit: every block and the LM head run, block K is picked afterwards."""
    from peft import LoraConfig, get_peft_model

    from hubkit.heads import identity_head
    from hubkit.meta import ARSpec, NLAMeta

    model, tok = models.load("smollm2-135m", dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    head = identity_head(576)
    meta = NLAMeta(role="ar", base_model="x", d_model=576, layer=LAYER, ar=ARSpec(num_layers=LAYER + 1))
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad] + list(head.parameters()), lr=1e-4
    )
    table = pq.read_table(str(data))
    texts = table.column("explanation").to_pylist()
    vectors = torch.tensor(table.column("vector").to_pylist())
    secs = []
    model.train()
    for s in range(steps):
        t0 = time.perf_counter()
        rows = [(s * 4 + i) % len(texts) for i in range(4)]
        seqs = [torch.tensor(build_ar_ids(tok, meta, texts[i])) for i in rows]
        ids, mask = arch.right_padded(seqs, tok.pad_token_id or 0)
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        pred = head(last_token(out.hidden_states[LAYER + 1], mask).float())
        loss = normalised_mse(pred, vectors[rows]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        secs.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(secs[1:]), "first_step_s": secs[0], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (on a shared 2-core machine, 1 avoids oversubscription)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models.prepare("smollm2-135m")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        av_data, ar_data = make_tables(folder, args.rows)
        shipped = load_recipe(Path(__file__).resolve().parents[1] / "training" / "smollm2-135m.yaml")
        common = {
            "base_model": "smollm2-135m",
            "layer": LAYER,
            "dtype": "bfloat16",
            "output_dir": str(folder),
            "nla": to_dict(shipped.nla),
        }
        for kind in ("lora", "full"):
            r = recipe_from_dict({**common, "av": stage(args.steps, av_data, kind)})
            results[f"av_{kind}"] = run(train_av, r, folder / f"av_{kind}")
        r = recipe_from_dict({**common, "ar": stage(args.steps, ar_data, "lora")})
        results["ar_lora_early_exit"] = run(train_ar, r, folder / "ar_lora")
        results["ar_lora_naive_full_depth"] = naive_ar(args.steps, ar_data)
    print(f"SmolLM2-135M, layer {LAYER}, micro-batch 4, bf16 base, {torch.get_num_threads()} CPU threads")
    for name, res in results.items():
        wall = (
            f"  wall {res['wall_s']:.1f} s (load + {res['steps']} steps + checkpoint)"
            if "wall_s" in res
            else ""
        )
        print(f"  {name:<26} {res['step_s']:.3f} s/step (first step {res['first_step_s']:.2f} s){wall}")
    print(
        f"  AV full / LoRA step time:            {results['av_full']['step_s'] / results['av_lora']['step_s']:.2f}×"
    )
    print(
        f"  AR naive / early-exit step time:     "
        f"{results['ar_lora_naive_full_depth']['step_s'] / results['ar_lora_early_exit']['step_s']:.2f}×"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
