"""A local judge that scores the three verdicts instead of generating free text.

Small local models rarely answer with a bare verdict word (SmolLM2-135M writes a sentence in most
replies), so this judge prefills ``<verdict>`` and takes the verdict whose tokens are the most likely: every
claim gets a verdict, deterministically. It answers like a `Labeler` (``<verdict>WORD</verdict>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hubkit import arch, models
from hubkit.data.labelers import Messages, render_chat
from hubkit.eval.judge import VERDICTS

OPEN, CLOSE = "<verdict>", "</verdict>"


class LikelihoodJudge:
    """Picks the most likely verdict for each conversation (see the module docstring)."""

    def __init__(self, model, tokenizer, name: str) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.name = f"{name} (likelihood of each verdict)"

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, dtype: torch.dtype | None = None, device: str = "cpu"
    ) -> LikelihoodJudge:
        """A registry model or local folder, loaded with `hubkit.models.load`."""
        model, tok = models.load(name_or_path, dtype=dtype or torch.float32, device=device)
        return cls(model, tok, f"transformers:{name_or_path}")

    @torch.no_grad()
    def scores(self, conversation: Messages) -> dict[str, float]:
        """Total log-probability of each verdict's tokens after the prompt."""
        tok = self.tokenizer
        prompt = tok(render_chat(tok, conversation, OPEN), add_special_tokens=False)["input_ids"]
        rows = [
            torch.tensor(prompt + tok(w + CLOSE, add_special_tokens=False)["input_ids"]) for w in VERDICTS
        ]
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids, mask = arch.right_padded(rows, pad)
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
        return {
            w: float(logp[i, len(prompt) - 1 : len(r) - 1].sum())
            for i, (w, r) in enumerate(zip(VERDICTS, rows))
        }

    def chat(self, conversations: Sequence[Messages]) -> list[str]:
        best = [max(s, key=s.get) for s in map(self.scores, conversations)]
        return [f"{OPEN}{w}{CLOSE}" for w in best]
