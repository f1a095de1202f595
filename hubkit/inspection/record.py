"""An inspection's data: the sequence, the chosen positions, their vectors, round trip and baseline.

`InspectionData` holds the figures and turns them into per-token records (the lines of tokens.jsonl)
and a summary; `hubkit.inspection.core.Inspection` adds the writers (page, transcript, files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from hubkit.eval.spliced import SplicedLoss
from hubkit.inspection.baseline import Baseline
from hubkit.inspection.source import TokenSequence


@dataclass
class InspectionData:
    """What an NLA says about each chosen token of one text."""

    sequence: TokenSequence
    positions: list[int]
    token_texts: list[str]  # decoded text of every token of the sequence
    vectors: Tensor  # float32 [N, d] read at the positions
    round_trip: Any  # hubkit.pair.RoundTrip
    baseline: Baseline
    info: dict  # layer, d_model, base, av, ar, injection and mse scales
    spliced: SplicedLoss | None = None
    reply: str = ""  # the base's reply as text (the prompt's is `sequence.rendered`)

    def records(self) -> list[dict]:
        """One dict per position, in the order of `positions` (the lines of tokens.jsonl)."""
        rt, out = self.round_trip, []
        for i, p in enumerate(self.positions):
            cos = float(rt.cos[i])
            mse = 2.0 * (1.0 - cos)
            rec = {
                "index": p,
                "token": self.token_texts[p],
                "role": self.sequence.role(p),
                "norm": float(self.vectors[i].norm()),
                "explanation": rt.details[i].text,
                "status": rt.details[i].status,
                "cos": cos,
                "mse_nrm": mse,
                "fve_nrm": None if self.baseline.b is None else 1.0 - mse / self.baseline.b,
            }
            if self.spliced is not None and self.spliced.rows is not None:
                r = self.spliced.rows
                rec["spliced"] = {
                    "target": r.targets[i],
                    **{f"ce_{c}": float(v[i]) for c, v in r.ce.items()},
                    **{f"kl_{c}": float(v[i]) for c, v in r.kl.items()},
                }
            out.append(rec)
        return out

    def summary(self) -> dict:
        """inspect.json: the settings, the baseline's source and the figures over all positions."""
        recs = self.records()
        fves = [r["fve_nrm"] for r in recs if r["fve_nrm"] is not None]
        return {
            **self.info,
            "n_tokens": len(self.sequence.ids),
            "n_prompt": self.sequence.n_prompt,
            "positions": len(self.positions),
            "baseline_b": self.baseline.b,
            "baseline_source": self.baseline.source,
            "mean_cos": float(self.round_trip.cos.mean()),
            "mean_fve_nrm": sum(fves) / len(fves) if fves else None,
            "spliced_loss": self.spliced.to_dict() if self.spliced is not None else None,
        }


def finite(x: Any) -> Any:
    """JSON-ready: a non-finite float becomes None (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
