"""A local labeler on vLLM: the same chat prompts as `TransformersLabeler` (chat template, reply primed
with ``<explanation>``), generated greedily by an offline vLLM engine (`hubkit.engines`).

vLLM has no n-gram blocking, so unlike the transformers labeler (``no_repeat_ngram_size=4``) a small
model may repeat a phrase; with that blocking off both give the same replies (tested on SmolLM2-135M).
Generation stops at the model's EOS; the reply is cut after the first ``</explanation>``, where the
transformers labeler's stop string ends it.
"""

from __future__ import annotations

from collections.abc import Sequence

from hubkit import constants as C
from hubkit import engines
from hubkit.data.labelers import Messages, render_chat
from hubkit.engines import ModelSource


class VLLMLabeler:
    """Chat replies from an offline vLLM engine over a local model folder (greedy, batched by vLLM)."""

    def __init__(
        self,
        engine,
        tokenizer,
        name: str,
        *,
        max_new_tokens: int = 96,
        prefill: str = C.EXPLANATION_OPEN,
        stop: str | None = C.EXPLANATION_CLOSE,
    ) -> None:
        self.engine, self.tokenizer, self.name = engine, tokenizer, name
        self.max_new_tokens, self.prefill, self.stop = max_new_tokens, prefill, stop

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | None = None, *, dtype: str = "float32", **kwargs
    ) -> VLLMLabeler:
        """Start vLLM on a registry model (default: the offline default model) or a local folder."""
        from transformers import AutoTokenizer

        from hubkit import models  # lazy: it imports torch; the labeler choices load without it

        name = name_or_path or models.DEFAULT_MODEL
        folder = models.resolve_base(name)
        engine = engines.get_engine("vllm", ModelSource(base=str(folder), dtype=dtype))
        return cls(engine, AutoTokenizer.from_pretrained(str(folder)), f"vllm:{name}", **kwargs)

    def render(self, messages: Messages) -> str:
        return render_chat(self.tokenizer, messages, self.prefill)

    def chat(self, conversations: Sequence[Messages]) -> list[str]:
        tok = self.tokenizer
        prompts = [tok(self.render(m), add_special_tokens=False)["input_ids"] for m in conversations]
        stops = [tok.eos_token_id] if tok.eos_token_id is not None else []
        rows = self.engine.generate_from_ids(
            prompts, max_new_tokens=self.max_new_tokens, stop_token_ids=stops
        )
        return [self.prefill + cut_after(tok.decode(r, skip_special_tokens=True), self.stop) for r in rows]


def cut_after(text: str, stop: str | None) -> str:
    """`text` up to and including the first `stop` (all of it when `stop` is absent or None)."""
    if not stop or stop not in text:
        return text
    return text[: text.index(stop) + len(stop)]
