"""Read a model with an NLA: every chosen token of a text or chat, its vector, explanation and round trip.

`inspect_pair` uses extraction's own tokenization and forward and `NLAPair.round_trip`, so vectors,
explanations and cosines are exactly what `hubkit extract`, `hubkit explain` and `hubkit round-trip`
give for them; optionally the spliced loss of each position is measured against its true next token.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from hubkit import arch
from hubkit.base_access import Base, base_of, loaded_base
from hubkit.errors import DataError
from hubkit.eval.spliced import spliced_rows, summarize_spliced
from hubkit.inspection import baseline
from hubkit.inspection.page import render_page
from hubkit.inspection.record import InspectionData, finite
from hubkit.inspection.source import Messages, build_sequence, parse_positions
from hubkit.inspection.transcript import render_transcript
from hubkit.vectors import check_vectors
from hubkit.vectors_io import write_vectors
from hubkit.verbalizer import stop_token_ids


class Inspection(InspectionData):
    """`InspectionData` with its writers: the transcript, the page, a whole output folder."""

    def transcript(self) -> str:
        return render_transcript(self)

    def to_jsonl(self, path: str | Path) -> Path:
        """tokens.jsonl: one JSON line per inspected position."""
        lines = [json.dumps(finite(r), ensure_ascii=False) for r in self.records()]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return Path(path)

    def to_html(self, path: str | Path | None = None) -> str:
        """The self-contained page; written to `path` when given."""
        page = render_page(self)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def save(self, out_dir: str | Path) -> Path:
        """Write tokens.jsonl, vectors.safetensors, transcript.txt, index.html and inspect.json (the summary)
        into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.to_jsonl(out / "tokens.jsonl")
        write_vectors(out / "vectors.safetensors", self.vectors)
        (out / "transcript.txt").write_text(self.transcript(), encoding="utf-8")
        self.to_html(out / "index.html")
        summary = json.dumps(finite(self.summary()), indent=2, ensure_ascii=False)
        (out / "inspect.json").write_text(summary + "\n")
        return out


def read_vectors(base: Base, layer: int, ids: list[int], positions: list[int]) -> Tensor:
    """Layer-`layer` vectors of the sequence `ids` at `positions` (float32), as extraction reads them."""
    device = next(base.model.parameters()).device
    x = torch.tensor([ids], device=device)
    hidden = arch.hidden_at_block(base.model, layer, input_ids=x, attention_mask=torch.ones_like(x))
    return check_vectors(
        hidden[0, positions].float().cpu(), f"layer {layer} of the base", what="the residual"
    )


def inspect_pair(
    pair,
    text: str | None = None,
    *,
    chat: Messages | None = None,
    reply_tokens: int = 0,
    positions: str | list[int] | None = "all",
    base: Base | None = None,
    base_model: str | None = None,
    baseline_b: float | None = None,
    baseline_source: str | None = None,
    spliced_loss: bool = False,
    batch_size: int | None = None,
    spliced_batch_size: int = 8,
    **generate_kwargs,
) -> Inspection:
    """Inspect `text` (or `chat`) with `pair`; see the module docstring. `baseline_b` is the training
    distribution's ``B`` when known (else it is measured on the bundled corpus); `generate_kwargs` go to
    the AV (max_new_tokens, engine, …)."""
    layer = pair.av.meta.layer
    if layer is None:
        raise DataError("the AV meta records no layer (and the AR none either); an NLA needs its layer")
    if reply_tokens < 0:
        raise DataError(f"--reply must be >= 0 tokens, got {reply_tokens}")
    base = loaded_base(pair, base, base_model)  # loaded once when the AV is full weights
    with base_of(pair, base) as bm:
        stops = stop_token_ids(bm.model, bm.tokenizer)
        seq = build_sequence(
            bm.model, bm.tokenizer, text=text, chat=chat, reply_tokens=reply_tokens, stop_ids=stops
        )
        chosen = parse_positions(positions, seq)
        vectors = read_vectors(bm, layer, seq.ids, chosen)
        need_mean = spliced_loss or baseline_b is None
        measured = baseline.measure(bm.model, bm.tokenizer, layer) if need_mean else None
    rt = pair.round_trip(vectors, batch_size=batch_size, **generate_kwargs)
    bl = measured
    if baseline_b is not None:
        mean = measured.mean if measured else None
        bl = baseline.Baseline(baseline.check_b(baseline_b, "baseline_b"), baseline_source or "given", mean)
    spliced = None
    if spliced_loss:
        with base_of(pair, base) as bm:
            nxt = [seq.ids[p + 1] if p + 1 < len(seq.ids) else None for p in chosen]
            rows = spliced_rows(
                bm.model,
                layer,
                [seq.ids] * len(chosen),
                chosen,
                vectors,
                rt.reconstructions.float(),
                bl.mean,
                next_tokens=nxt,
                batch_size=spliced_batch_size,
            )
        spliced = summarize_spliced(rows, layer, mean_source=f"mean vector {measured.source}")
    tok = pair.av.tokenizer
    return Inspection(
        sequence=seq,
        positions=chosen,
        token_texts=[tok.decode([t]) for t in seq.ids],
        vectors=vectors,
        round_trip=rt,
        baseline=bl,
        info=_info(pair, layer),
        spliced=spliced,
        reply=tok.decode(seq.ids[seq.n_prompt :]) if seq.n_reply else "",
    )


def _info(pair, layer: int) -> dict:
    m = pair.av.meta
    return {
        "base_model": m.base_model,
        "layer": layer,
        "d_model": m.d_model,
        "injection_scheme": m.injection.scheme,
        "injection_scale": m.injection_scale_value(),
        "mse_scale": pair.ar.meta.mse_scale_value(),
        "av": "",  # where the halves came from: a loaded half does not know; `hubkit inspect` fills them in
        "ar": "",
    }
