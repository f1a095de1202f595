"""Full batched `hubkit eval` vs a per-row loop, on 64 rows of SmolLM2-135M (untrained NLA pair).

The pair is SmolLM2-135M-Instruct carrying two fresh LoRA adapters (``av``, ``ar``; B=0, so they
start as the base) and an identity AR head, reading layer 20. Eval vectors are real layer-20
residuals of short sentences. Both ways compute the same figures:

* batched: `hubkit.eval.evaluate_pair` (AV generates a batch of vectors at once; the AR reads each
  distinct text once, controls included; statistics; rows.parquet, plots, eval.json);
* per-row: one vector at a time through generate, then one text at a time through the AR (real
  explanation and each of the four controls), then the same statistics.

Then the CLI end to end (`hubkit eval` on adapter checkpoints written to disk, loading included).

With ``--sections``: a 2 AV x 2 AR cross-pair matrix (`cross_pair_matrix`: each AV generates once,
each AR reads every AV's texts) side by side with the naive way (one generation per cell), the
same cell figures checked equal; then the cost of paraphrase sensitivity (the base model as a local
paraphraser) and claim ablation on the same rows.

    python benchmarks/bench_eval.py [--rows 64] [--max-new-tokens 24] [--batch-size 16] [--dtype auto]
                                    [--sections] [--skip-pair] [--skip-cli]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "def add(a, b):\n    return a + b  # a tiny python function",
    "In 1969, astronauts landed on the Moon for the first time.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The stock market fell sharply after the central bank raised rates.",
    "She whispered that the concert had been cancelled because of the storm.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The novel follows a detective who investigates a murder in Venice.",
    "Add two cups of flour and stir until the batter is smooth.",
    "Neural networks learn representations from large amounts of data.",
    "The referee blew the whistle and the crowd erupted in cheers.",
    "Mount Everest is the highest mountain above sea level on Earth.",
    "Please remember to submit your expense report by Friday afternoon.",
    "The violin section played the opening theme softly and slowly.",
    "Electric cars are becoming cheaper as battery prices decline.",
    "Ancient Rome built aqueducts to carry water into its cities.",
]


AV_TEMPLATE = "Here is an activation vector:{injection_char}\nExplain what it encodes inside <explanation></explanation> tags."


def extract(model, tok, layer: int, rows: int, seed: int = 0):
    """`rows` real residual vectors (output of block `layer`) at random non-BOS positions of SENTENCES."""
    from hubkit.arch import hidden_at_block

    rng = np.random.default_rng(seed)
    out = []
    per = -(-rows // len(SENTENCES))
    for d, s in enumerate(SENTENCES):
        ids = tok(s, return_tensors="pt")
        h = hidden_at_block(model, layer, **ids)[0].float()
        n = ids["input_ids"].shape[1]
        for p in sorted(rng.choice(np.arange(1, n), size=min(per, n - 1), replace=False).tolist()):
            prefix = tok.decode(ids["input_ids"][0, : p + 1], skip_special_tokens=True)
            out.append((f"doc{d}", p, prefix, h[p].numpy()))
    return out[:rows]


def write_table(path: Path, rows) -> Path:
    v = np.stack([r[3] for r in rows]).astype(np.float32)
    pq.write_table(
        pa.table(
            {
                "doc_id": [r[0] for r in rows],
                "position": [r[1] for r in rows],
                "prefix": [r[2] for r in rows],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1]),
            }
        ),
        str(path),
    )
    return path


def build_pair(model, tok, spec):
    """An untrained shared-base pair: fresh LoRA adapters ``av`` and ``ar`` and an identity head."""
    from peft import LoraConfig, get_peft_model

    from hubkit import heads, injection
    from hubkit.meta import ARSpec, AVSpec, Injection, NLAMeta
    from hubkit.pair import NLAPair
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.verbalizer import ActivationVerbalizer, render_prompt

    # The marker must stay one token: SmolLM2's BPE merges it with a preceding space (" §"), so no space.
    av_spec = AVSpec(template=AV_TEMPLATE, chat_template=spec.chat_template)
    marker = injection.pick_marker(
        tok, lambda m: render_prompt(tok, av_spec.template, m, av_spec.chat_template)
    )
    ar_spec = ARSpec(num_layers=spec.nla_layer + 1)
    common = dict(base_model=spec.name, d_model=spec.d_model, layer=spec.nla_layer)
    av_meta = NLAMeta(
        role="av",
        injection=Injection(scale=float(spec.embed_norm), marker=marker),
        av=av_spec,
        ar=ar_spec,
        **common,
    )
    ar_meta = NLAMeta(role="ar", ar=ar_spec, **common)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg, adapter_name="av")
    peft_model.add_adapter("ar", cfg)
    peft_model.eval()
    av = ActivationVerbalizer(peft_model, tok, av_meta, adapter_name="av")
    ar = ActivationReconstructor(
        peft_model, tok, ar_meta, heads.identity_head(spec.d_model), adapter_name="ar"
    )
    return NLAPair(av, ar), av_meta, ar_meta


def per_row_loop(pair, vectors: torch.Tensor, controls: dict[str, list[str]], max_new_tokens: int, seed: int):
    """The naive way: one vector per generate call, one text per AR call, then the same statistics."""
    from hubkit.eval.diversity import diversity
    from hubkit.eval.identification import identification
    from hubkit.eval.metrics import cosine_rows, fve, noise_floor, summarize

    texts, v_hat, t_gen, t_ar = [], [], 0.0, 0.0
    for i in range(len(vectors)):
        t0 = time.perf_counter()
        d = pair.av.explain_detailed(vectors[i : i + 1], batch_size=1, max_new_tokens=max_new_tokens)[0]
        t_gen += time.perf_counter() - t0
        texts.append(d.text)
        t0 = time.perf_counter()
        v_hat.append(pair.ar.reconstruct([d.text], batch_size=1)[0])
        t_ar += time.perf_counter() - t0
    v_hat = torch.stack(v_hat)
    control_out = {}
    t0 = time.perf_counter()
    for name, ctexts in controls.items():
        control_out[name] = torch.stack([pair.ar.reconstruct([t], batch_size=1)[0] for t in ctexts])
    t_controls = time.perf_counter() - t0
    v = vectors.double().numpy()
    vh = v_hat.double().numpy()
    cos = cosine_rows(v, vh)
    figures = {
        "cos": summarize(cos, seed=seed),
        "fve": fve(v, vh, seed=seed),
        "floor": noise_floor(v, vh, seed=seed),
        "ident": identification(v, vh),
        "div": diversity(texts),
        "controls": {
            k: summarize(cos - cosine_rows(v, o.double().numpy()), seed=seed) for k, o in control_out.items()
        },
    }
    return (
        texts,
        cos,
        figures,
        {"generate_s": round(t_gen, 1), "reconstruct_s": round(t_ar, 1), "controls_s": round(t_controls, 1)},
    )


def bench_sections(pair, tok, table, args) -> None:
    """Cross-pair matrix vs one generation per cell (same cells); paraphrase and claim-ablation costs."""
    from peft import LoraConfig

    from hubkit.data.labelers import TransformersLabeler
    from hubkit.eval.ablations import reconstruct_unique
    from hubkit.eval.claims import claim_ablation
    from hubkit.eval.cross_pair import cell_figures, cross_pair_matrix
    from hubkit.eval.generation import Generation
    from hubkit.eval.paraphrase import paraphrase_sensitivity
    from hubkit.eval.table import EvalTable
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.verbalizer import ActivationVerbalizer

    model = pair.av.model
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    g = torch.Generator().manual_seed(1)
    for name in ("av2", "ar2"):
        model.add_adapter(name, cfg)
        with torch.no_grad():  # non-zero B: the second halves really differ from the first
            for n, p in model.named_parameters():
                if f"lora_B.{name}." in n:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    model.eval()
    avs = {"av": pair.av, "av2": ActivationVerbalizer(model, tok, pair.av.meta, adapter_name="av2")}
    ars = {
        "ar": pair.ar,
        "ar2": ActivationReconstructor(model, tok, pair.ar.meta, pair.ar.head, adapter_name="ar2"),
    }
    tbl = EvalTable.read(table)
    gen = Generation(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    t0 = time.perf_counter()
    cp = cross_pair_matrix(avs, ars, tbl, generation=replace(gen, seed=args.seed), n_boot=500)
    matrix_s = time.perf_counter() - t0
    v = tbl.vectors.float()
    vn = v.numpy().astype(np.float64)
    t0 = time.perf_counter()
    naive = []
    for a, av in avs.items():
        for r, ar in ars.items():
            ds = gen.run(av, v, args.seed)
            out = reconstruct_unique(ar, [d.text for d in ds], gen.ar_batch_size)
            ok = np.array([d.ok for d in ds], dtype=bool)
            naive.append(cell_figures(a, r, vn, out, ok, 500, args.seed))
    naive_s = time.perf_counter() - t0
    same = all(c.cos == n.cos and c.identification == n.identification for c, n in zip(cp.cells, naive))
    print(
        f"\ncross-pair 2 AV x 2 AR on {len(tbl)} rows: matrix {matrix_s:.1f} s, one generation per cell {naive_s:.1f} s"
    )
    print(f"speed-up: {naive_s / matrix_s:.2f}x; cells identical both ways: {same}")
    for c in cp.cells:
        print(f"  {c.av} x {c.ar}: cos {c.cos.mean:.4f} top-1 {c.identification[0].accuracy:.3f}")

    texts = cp.explanations["av"]
    v_hat = reconstruct_unique(pair.ar, texts, gen.ar_batch_size)
    labeler = TransformersLabeler(
        model, tok, "transformers:base (adapters off)", max_new_tokens=48, batch_size=args.batch_size
    )
    t0 = time.perf_counter()
    with model.disable_adapter():
        from hubkit.eval.paraphrase import paraphrase

        paras = paraphrase(labeler, texts)
    para_gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = paraphrase_sensitivity(
        pair.ar, vn, texts, paraphrases=paras, real_reconstructions=v_hat, seed=args.seed
    )
    para_ar_s = time.perf_counter() - t0
    print(f"\nparaphrase: {para_gen_s:.1f} s paraphrasing (base model), {para_ar_s:.1f} s AR + statistics")
    print(
        f"  statuses {ps.statuses}; cos change {ps.delta.mean}; top-1 flips {ps.flips[0].flip_share:.3f}; {ps.verdict}"
    )
    t0 = time.perf_counter()
    ca = claim_ablation(pair.ar, vn, texts, real_reconstructions=v_hat, seed=args.seed)
    print(
        f"claim ablation: {time.perf_counter() - t0:.1f} s for {ca.n_claims} claims of {ca.n_rows_ablated} rows; "
        f"mean cosine carried {ca.delta.mean}"
    )


def save_checkpoints(pair, av_meta, ar_meta, root: Path) -> tuple[Path, Path]:
    from hubkit.checkpoint import write_checkpoint

    av_dir = write_checkpoint(root / "av", pair.av.model, pair.av.tokenizer, av_meta, adapter_name="av")
    ar_dir = write_checkpoint(
        root / "ar", pair.ar.model, pair.ar.tokenizer, ar_meta, head=pair.ar.head, adapter_name="ar"
    )
    return av_dir, ar_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-cli", action="store_true", help="Skip the end-to-end CLI run.")
    ap.add_argument(
        "--sections", action="store_true", help="Time the cross-pair matrix, paraphrase, claim ablation."
    )
    ap.add_argument(
        "--skip-pair", action="store_true", help="Skip the batched pair eval vs per-row loop comparison."
    )
    args = ap.parse_args()

    from hubkit import models
    from hubkit.eval.generation import Generation
    from hubkit.eval.pair_eval import evaluate_pair
    from hubkit.precision import resolve_dtype

    dtype = resolve_dtype(args.dtype, "cpu")
    args.dtype = str(dtype).removeprefix("torch.")
    spec = models.get_spec(args.model)
    print(
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load avg {os.getloadavg()}"
    )
    t0 = time.perf_counter()
    model, tok = models.load(args.model, dtype=dtype)
    print(f"load {args.model} ({args.dtype}): {time.perf_counter() - t0:.1f} s", flush=True)
    rows = extract(model, tok, spec.nla_layer, args.rows, args.seed)
    pair, av_meta, ar_meta = build_pair(model, tok, spec)

    with tempfile.TemporaryDirectory(prefix="hubkit-bench-eval-") as tmp:
        tmp = Path(tmp)
        table = write_table(tmp / "eval.parquet", rows)
        # warm-up (first-call allocations, kernels), not timed
        pair.av.explain_detailed(torch.tensor(np.stack([r[3] for r in rows[:2]])), max_new_tokens=2)

        if not args.skip_pair:
            t0 = time.perf_counter()
            rep = evaluate_pair(
                pair,
                table,
                out_dir=tmp / "batched",
                generation=Generation(args.max_new_tokens, args.batch_size, seed=args.seed),
            )
            batched_s = time.perf_counter() - t0
            timing = {k: round(v, 1) if isinstance(v, float) else v for k, v in rep.timing.items()}
            print(
                f"batched evaluate_pair (incl. stats, plots, eval.json): {batched_s:.1f} s  {timing}",
                flush=True,
            )

            vectors = torch.tensor(np.stack([r[3] for r in rows]), dtype=torch.float32)
            cs = rep.figures.content_sensitivity.av
            controls = {k: v for k, v in cs.texts.items() if k != "other_row"}
            t0 = time.perf_counter()
            texts, cos, figs, loop_timing = per_row_loop(
                pair,
                vectors,
                {**controls, "other_row": cs.texts["other_row"]},
                args.max_new_tokens,
                args.seed,
            )
            loop_s = time.perf_counter() - t0

            batched_texts = rep.rows.column("explanation").to_pylist()
            same = sum(a == b for a, b in zip(texts, batched_texts))
            bcos = np.asarray(rep.rows.column("cos").to_pylist())
            agree = np.abs(bcos - cos)[[a == b for a, b in zip(texts, batched_texts)]]
            print(f"\nrows {len(rows)}, max_new_tokens {args.max_new_tokens}, AV batch {args.batch_size}")
            print(f"batched evaluate_pair: {batched_s:.1f} s")
            print(f"per-row loop (generate + AR + 4 controls, one at a time): {loop_s:.1f} s  {loop_timing}")
            print(f"speed-up: {loop_s / batched_s:.1f}x")
            print(
                f"same explanation text in both ways: {same}/{len(rows)}; |cos diff| on those rows: max "
                f"{agree.max() if agree.size else float('nan'):.2e}"
            )
            print(
                f"mean cos batched {bcos.mean():.4f} vs loop {cos.mean():.4f}; statuses "
                f"{rep.figures.round_trip.statuses}"
            )
            print(f"verdicts: {rep.verdicts.note}")

        if args.sections:
            bench_sections(pair, tok, table, args)

        if not args.skip_cli:
            from click.testing import CliRunner

            from hubkit.cli.eval import eval_command

            av_dir, ar_dir = save_checkpoints(pair, av_meta, ar_meta, tmp / "ckpt")
            del pair, model
            t0 = time.perf_counter()
            res = CliRunner().invoke(
                eval_command,
                [
                    "--av",
                    str(av_dir),
                    "--ar",
                    str(ar_dir),
                    "--table",
                    str(table),
                    "--out",
                    str(tmp / "cli"),
                    "--max-new-tokens",
                    str(args.max_new_tokens),
                    "--batch-size",
                    str(args.batch_size),
                    "--seed",
                    str(args.seed),
                    "--dtype",
                    args.dtype,
                ],
            )
            cli_s = time.perf_counter() - t0
            if res.exit_code != 0:
                raise SystemExit(f"hubkit eval failed: {res.output}\n{res.exception!r}")
            print(
                f"\n`hubkit eval` end to end (load base + 2 adapters from disk, hash files, eval): {cli_s:.1f} s"
            )
            print(res.output.strip())


if __name__ == "__main__":
    main()
