"""What `hubkit inspect` reads: the token sequence of a text or a chat, the base's greedy reply, the positions.

A plain text is tokenized exactly as stage 0 extraction does, so a vector read here is the vector
`hubkit extract` reads at that position. A chat is rendered with the base's chat template and gets BOS in
front unless the template already writes it (Gemma and Llama templates do). A greedy reply keeps its stop
token, as in the reference's worked examples. Nothing is ever cut: a sequence past the context is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hubkit import arch
from hubkit.data.extract import tokenize
from hubkit.errors import DataError
from hubkit.vectors_io import read_text_file

Messages = list[dict[str, str]]


@dataclass
class TokenSequence:
    """The ids the base reads, which of them are the prompt, and how the prompt was made."""

    ids: list[int]
    n_prompt: int
    rendered: str  # the prompt as text (the chat template's output for a chat)
    chat: Messages | None = None

    @property
    def n_reply(self) -> int:
        return len(self.ids) - self.n_prompt

    def role(self, position: int) -> str:
        return "prompt" if position < self.n_prompt else "reply"


def read_chat(path: str | Path) -> Messages:
    """A chat file: a JSON list of ``{"role": str, "content": str}`` objects (one line naming what is wrong)."""
    path = Path(path)
    try:
        data = json.loads(read_text_file(path))
    except ValueError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); a chat file is a JSON list of {{role, content}}"
        ) from exc
    if not isinstance(data, list) or not data:
        raise DataError(
            f'{path}: a chat must be a non-empty JSON list of {{"role": ..., "content": ...}} objects, '
            f"got {type(data).__name__}{' (empty)' if isinstance(data, list) else ''}"
        )
    for i, m in enumerate(data):
        if not (isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("role", "content"))):
            raise DataError(
                f"{path}: message {i} is not an object with string `role` and `content` "
                f'(got {json.dumps(m)[:80]}); write each message as {{"role": "user", "content": "..."}}'
            )
    return [{"role": m["role"], "content": m["content"]} for m in data]


def prompt_ids(tokenizer, text: str | None = None, chat: Messages | None = None) -> tuple[list[int], str]:
    """(ids, rendered prompt) for a plain text or a chat, with BOS as extraction puts it."""
    if (text is None) == (chat is None):
        raise DataError("give a text or a chat to inspect, not both and not neither")
    if chat is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(
                "the base's tokenizer has no chat template, so a chat cannot be rendered; give --text instead"
            )
        rendered = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        bos = tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids, rendered
    if not text.strip():
        raise DataError("the text to inspect is empty; give a text with at least one word")
    return tokenize(tokenizer, [text], add_bos=True, max_length=1 << 62)[0], text


@torch.no_grad()
def greedy_reply(model: nn.Module, ids: list[int], max_new_tokens: int, stop_ids: Sequence[int]) -> list[int]:
    """The base's greedy continuation of `ids`: up to `max_new_tokens`, ending with (and keeping) a stop id."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=list(stop_ids) or None,
        pad_token_id=(list(stop_ids) or [0])[0],
    )
    new = out[0, len(ids) :].tolist()
    for i, t in enumerate(new):
        if t in stop_ids:
            return new[: i + 1]
    return new


def build_sequence(
    model: nn.Module,
    tokenizer,
    text: str | None = None,
    chat: Messages | None = None,
    reply_tokens: int = 0,
    stop_ids: Sequence[int] = (),
) -> TokenSequence:
    """The token sequence to inspect (prompt + optional greedy reply), refused when past the context."""
    ids, rendered = prompt_ids(tokenizer, text=text, chat=chat)
    if not ids:
        raise DataError("the text to inspect has no tokens")
    limit = arch.context_length(model)
    if limit and len(ids) + reply_tokens > limit:
        raise DataError(
            f"the {'chat' if chat else 'text'} (with {reply_tokens} reply tokens) is {len(ids) + reply_tokens} "
            f"tokens, longer than the base's context of {limit}; nothing is cut: shorten the text or inspect "
            "it in parts"
        )
    reply = greedy_reply(model, ids, reply_tokens, stop_ids) if reply_tokens > 0 else []
    return TokenSequence(ids=ids + reply, n_prompt=len(ids), rendered=rendered, chat=chat)


def parse_positions(spec: str | Sequence[int] | None, seq: TokenSequence) -> list[int]:
    """Positions named by `spec`: ``all`` (default), ``prompt``, ``reply``, ``last`` or ``I,J,K`` (negative
    counts from the end); out-of-range or empty selections are refused naming the valid range."""
    n = len(seq.ids)
    if spec is None or spec == "all":
        return list(range(n))
    if spec == "prompt":
        return list(range(seq.n_prompt))
    if spec == "reply":
        if seq.n_reply == 0:
            raise DataError(
                "--positions reply: there is no reply; add --reply N (tokens of the base's reply)"
            )
        return list(range(seq.n_prompt, n))
    if spec == "last":
        return [n - 1]
    if isinstance(spec, str):
        try:
            items = [int(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise DataError(
                f"--positions {spec!r}: use all, prompt, reply, last or comma-separated integers like 3,7,-1"
            ) from None
    else:
        items = [int(p) for p in spec]
    if not items:
        raise DataError(f"--positions {spec!r} names no position")
    bad = [p for p in items if not -n <= p < n]
    if bad:
        raise DataError(
            f"--positions {bad[0]} is out of range: the sequence has {n} tokens (positions 0..{n - 1}, "
            f"or -{n}..-1 from the end)"
        )
    return sorted(dict.fromkeys(p % n for p in items))
