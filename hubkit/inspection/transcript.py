"""``transcript.txt``: an inspection in the layout of the reference's worked examples.

The reference release ships ``examples/<model>_layer<L>_step<N>.txt``: a header, (1) the prompt,
(2) the base's greedy reply, (3) per token a `token_line` and the AV's full explanation, then a summary.
This writes the same sections and line format, so the two can be read side by side.
"""

from __future__ import annotations

import statistics

from hubkit.inspection.record import InspectionData as Inspection

WIDTH = 80
HEAVY, LIGHT = "═" * WIDTH, "─" * WIDTH


def _section(title: str) -> list[str]:
    return [LIGHT, title, LIGHT, ""]


def _header(ins: Inspection) -> list[str]:
    info, b = ins.info, ins.baseline
    scale = info.get("mse_scale")
    b_txt = f"{b.b:.4f}" if b.b is not None else "n/a"
    return [
        HEAVY,
        "NLA (Natural Language Autoencoder) — INSPECTION",
        HEAVY,
        "",
        f"AV checkpoint:     {info.get('av') or '(in memory)'}",
        f"AR checkpoint:     {info.get('ar') or '(in memory)'}",
        f"Extraction model:  {info.get('base_model')}",
        f"Extraction:        layer {info['layer']} residual stream (= HF hidden_states[{info['layer'] + 1}], "
        f"output of block {info['layer']})",
        f"d_model:           {info.get('d_model')}",
        f"NLA inference:     {info.get('decoding', 'temp=0 (greedy — reproducible)')}",
        f"Critic mse_nrm:    MSE of L2-normalized vectors (both scaled to √d={scale:.2f}). Equals 2(1-cos).",
        "                   Range: 0 (perfect) — 2 (orthogonal).",
        f"fve_nrm:           1 - mse_nrm / {b_txt}. Denominator is the predict-the-mean baseline B, "
        f"{b.source}.",
        "",
    ]


def _prompt(ins: Inspection) -> list[str]:
    seq = ins.sequence
    if seq.chat is not None:
        lines = _section("1. CHAT-FORMATTED PROMPT")
        lines += [f"{m['role'].capitalize()} message:  {m['content']!r}" for m in seq.chat]
        lines += ["", "After apply_chat_template(add_generation_prompt=True):", f"  {seq.rendered!r}", ""]
    else:
        lines = _section("1. TEXT")
        lines += [f"  {seq.rendered!r}", ""]
    lines += [f"Tokenized: {seq.n_prompt} tokens (BOS included where the tokenizer has one)", ""]
    return lines


def _reply(ins: Inspection) -> list[str]:
    seq = ins.sequence
    lines = _section("2. BASE MODEL REPLY (temp=0)")
    lines += [f"  {ins.reply!r}" if seq.n_reply else "  (no reply asked for: --reply 0)", ""]
    lines += [
        f"Reply tokens: {seq.n_reply} — full seq {len(seq.ids)} (prompt {seq.n_prompt} + reply {seq.n_reply})",
        "",
    ]
    return lines


def token_line(rec: dict) -> str:
    """``[  i]  PROMPT  token='…'  ||v||=…  mse_nrm=…  cos=…  fve_nrm=…`` (the reference's token header)."""
    fve = f"{rec['fve_nrm']:.3f}" if rec["fve_nrm"] is not None else "n/a"
    line = (
        f"[{rec['index']:3d}]  {rec['role'].upper():<6}  token={rec['token']!r}  ||v||={rec['norm']:.1f}  "
        f"mse_nrm={rec['mse_nrm']:.3f}  cos={rec['cos']:.3f}  fve_nrm={fve}"
    )
    sp = rec.get("spliced")
    if sp is not None:
        line += f"  ce_orig={sp['ce_original']:.3f}  ce_recon={sp['ce_reconstruction']:.3f}  kl={sp['kl_reconstruction']:.3f}"
    if rec["status"] != "ok":
        line += f"  status={rec['status']}"
    return line


def _tokens(ins: Inspection, records: list[dict]) -> list[str]:
    scale = ins.info.get("injection_scale")
    lines = _section(f"3. PER-TOKEN NLA INFERENCE (layer-{ins.info['layer']} activation → explanation)")
    lines += [
        "  ||v|| is the RAW L2-norm. "
        + (
            f"Every vector is rescaled to L2={scale:.4g} (injection_scale) before injection."
            if scale is not None
            else "The injection scheme sets the vector's norm itself."
        ),
        "  MSE / cos columns: the AR's reconstruction of the activation from the",
        "  explanation text (MSE = 2(1-cos) under L2 norm).",
        "",
        "Full decode text follows each header — NOT truncated.",
        "",
    ]
    for rec in records:
        lines.append(token_line(rec))
        lines += [f"    {t}" for t in (rec["explanation"] or "(empty)").split("\n")]
        lines.append("")
    return lines


def _summary(ins: Inspection, records: list[dict]) -> list[str]:
    n = len(records)
    mse = [r["mse_nrm"] for r in records]
    fves = [r["fve_nrm"] for r in records if r["fve_nrm"] is not None]
    lines = [
        f"─── Summary ({n} positions) ───",
        f"  mse_nrm:  mean={statistics.fmean(mse):.3f}  median={statistics.median(mse):.3f}  "
        f"min={min(mse):.3f}  max={max(mse):.3f}",
        f"  cos:      mean={statistics.fmean(r['cos'] for r in records):.3f}  (from mse_nrm = 2(1-cos))",
    ]
    if fves:
        lines += [
            f"  fve_nrm:  mean={statistics.fmean(fves):.3f}  median={statistics.median(fves):.3f}  "
            f"(denom={ins.baseline.b:.4f}, {ins.baseline.source})",
            f"  fve_nrm>0.5:  {sum(f > 0.5 for f in fves)}/{n} positions",
            f"  fve_nrm>0.8:  {sum(f > 0.8 for f in fves)}/{n} positions",
            f"  fve_nrm<0:    {sum(f < 0 for f in fves)}/{n} positions (worse than predict-mean)",
        ]
    if ins.spliced is not None:
        lines.append(f"  spliced loss: {ins.spliced.headline(3)}")
    return [*lines, "", HEAVY]


def render_transcript(ins: Inspection) -> str:
    """The whole transcript text (ends with a newline)."""
    records = ins.records()
    parts = _header(ins) + _prompt(ins) + _reply(ins) + _tokens(ins, records) + _summary(ins, records)
    return "\n".join(parts) + "\n"
