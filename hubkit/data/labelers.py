"""Labelers: chat backends that write and audit labels (one reply per conversation, in order), and the
model-free `ContextLabeler`.

`OpenAIChatLabeler` retries with exponential backoff on `RETRY_STATUS` and connection errors (honouring
``Retry-After``); other 4xx answers fail at once with the server's message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hubkit import constants as C
from hubkit import engines
from hubkit.errors import DataError, HubkitError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LabelerError(HubkitError, RuntimeError):
    """A labeling backend that cannot answer (bad endpoint, refused request, retries used up)."""


@runtime_checkable
class Labeler(Protocol):
    """Anything that answers a batch of chat conversations; `name` goes into each row's provenance."""

    name: str

    def chat(self, conversations: Sequence[Messages]) -> list[str]: ...


@runtime_checkable
class DirectLabeler(Protocol):
    """A labeler that writes each explanation itself from (prefix, token), with no model and no auditor
    (`ContextLabeler`). `prompt_sha256` hashes its rule, for provenance."""

    name: str
    prompt_sha256: str

    def explain(self, prefix: str, token: str) -> str: ...


CONTEXT_TEMPLATE = 'The text ends with: "{quote}"'
DEFAULT_WORDS = 10
MAX_WORDS = 200
TOKEN_OPEN, TOKEN_CLOSE = "[", "]"
ELLIPSIS = "..."


def mark_token(prefix: str, token: str) -> str:
    """The prefix on one line with its final token in brackets (``the vill[age]`` for a word piece); a token the
    prefix does not end with (a decode of part of a character) marks the last word."""
    if token.strip() and prefix.endswith(token):
        head = prefix[: len(prefix) - len(token.lstrip())]  # a space the token starts with stays outside
        marked = f"{head}{TOKEN_OPEN}{token.strip()}{TOKEN_CLOSE}"
    else:
        words = prefix.split()
        head = prefix[: prefix.rstrip().rfind(words[-1])] if words else ""
        marked = f"{head}{TOKEN_OPEN}{words[-1]}{TOKEN_CLOSE}" if words else ""
    return " ".join(marked.split())


def quote_context(prefix: str, token: str, n_words: int = DEFAULT_WORDS) -> str:
    """The last `n_words` words of the marked prefix, with ``...`` in front when some were left out."""
    words = mark_token(prefix, token).split()
    quote = " ".join(words[-n_words:])
    return f"{ELLIPSIS} {quote}" if len(words) > n_words else quote


@dataclass(frozen=True)
class ContextLabeler:
    """``context:<n>``, model-free: the explanation quotes the end of the text the vector was read at,
    ``The text ends with: "... they had lunch at the [village]"`` (the last `n_words` words, the current token
    in brackets). An NLA trained on it learns to quote context: the label that shows an NLA *reads* its
    vectors in minutes; the LLM labelers give useful explanations."""

    n_words: int = DEFAULT_WORDS

    def __post_init__(self) -> None:
        if not 1 <= self.n_words <= MAX_WORDS:
            raise DataError(
                f"labeler context:{self.n_words}: the word count must be between 1 and {MAX_WORDS}"
            )

    @property
    def name(self) -> str:
        return f"context:{self.n_words}"

    @property
    def prompt_sha256(self) -> str:
        """What stands for the prompt in provenance: a hash of the quoting rule and its settings."""
        rule = "\0".join((self.name, CONTEXT_TEMPLATE, TOKEN_OPEN, TOKEN_CLOSE, ELLIPSIS))
        return hashlib.sha256(rule.encode()).hexdigest()

    def explain(self, prefix: str, token: str) -> str:
        return CONTEXT_TEMPLATE.format(quote=quote_context(prefix, token, self.n_words))


def parse_context_arg(arg: str | None) -> ContextLabeler:
    """``None`` or ``""`` → the default word count; ``"12"`` → 12 words; anything else is refused."""
    if not arg:
        return ContextLabeler()
    try:
        n = int(arg)
    except ValueError:
        raise DataError(
            f"labeler context:{arg}: expected a word count, e.g. context:{DEFAULT_WORDS}"
        ) from None
    return ContextLabeler(n)


class TransformersLabeler:
    """A local causal LM answering with its chat template (greedy, batched, reply primed with `prefill`)."""

    prefill, stop = C.EXPLANATION_OPEN, C.EXPLANATION_CLOSE

    def __init__(
        self,
        model,
        tokenizer,
        name: str,
        *,
        max_new_tokens: int = 96,
        batch_size: int = 8,
        no_repeat_ngram_size: int = 4,
    ) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.no_repeat_ngram_size = no_repeat_ngram_size  # small models loop on a phrase without it
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        if not getattr(tokenizer, "chat_template", None):
            log.warning("%s has no chat template; labeling with a plain 'User:/Assistant:' prompt", name)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: str = "cpu",
        **kwargs,
    ) -> TransformersLabeler:
        """Load a registry model (default: the offline default model) or a local folder with `hubkit.models.load`."""
        import torch

        from hubkit import models  # lazy: it imports torch; the labeler choices load without it

        name = name_or_path or models.DEFAULT_MODEL
        model, tok = models.load(name, dtype=dtype or torch.float32, device=device)
        return cls(model, tok, f"transformers:{name}", **kwargs)

    def render(self, messages: Messages) -> str:
        """The prompt text: the chat template with a generation prompt, then the prefill."""
        return render_chat(self.tokenizer, messages, self.prefill)

    def chat(self, conversations: Sequence[Messages]) -> list[str]:
        import torch

        tok, replies = self.tokenizer, []
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        device = next(self.model.parameters()).device
        side, tok.padding_side = tok.padding_side, "left"
        try:
            for start in range(0, len(conversations), self.batch_size):
                prompts = [self.render(m) for m in conversations[start : start + self.batch_size]]
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                with torch.no_grad():
                    out = self.model.generate(
                        **enc,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=pad,
                        no_repeat_ngram_size=self.no_repeat_ngram_size,
                        stop_strings=[self.stop],
                        tokenizer=tok,
                    )
                new = out[:, enc["input_ids"].shape[1] :]
                replies += [self.prefill + t for t in tok.batch_decode(new, skip_special_tokens=True)]
        finally:
            tok.padding_side = side
        return replies


def render_chat(tok, messages: Messages, prefill: str) -> str:
    """A local labeler's prompt: `tok`'s chat template with a generation prompt (or plain
    'User:/Assistant:' turns when it has none), then `prefill` opening the reply."""
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
        text = (tok.bos_token or "") + turns + "Assistant: "
    return text + prefill


class VLLMLabeler(TransformersLabeler):
    """The same chat prompts on an offline vLLM engine (`hubkit.engines`), greedy and batched by vLLM. vLLM has
    no n-gram blocking, so a small model may repeat a phrase; with that blocking off both labelers give the
    same replies (tested on SmolLM2-135M). The reply is cut after the first ``</explanation>``."""

    def __init__(self, engine, tokenizer, name: str, **kwargs) -> None:
        super().__init__(None, tokenizer, name, no_repeat_ngram_size=0, **kwargs)
        self.engine = engine  # answers `generate_from_ids` (`hubkit.engines.vllm_local.VLLMEngine`)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | None = None, *, dtype: str = "float32", **kwargs
    ) -> VLLMLabeler:
        """Start vLLM on a registry model (default: the offline default model) or a local folder."""
        from transformers import AutoTokenizer

        from hubkit import models  # lazy: it imports torch; the labeler choices load without it

        name = name_or_path or models.DEFAULT_MODEL
        folder = models.resolve_base(name)
        engine = engines.get_engine("vllm", engines.ModelSource(base=str(folder), dtype=dtype))
        return cls(engine, AutoTokenizer.from_pretrained(str(folder)), f"vllm:{name}", **kwargs)

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
    return text[: text.index(stop) + len(stop)] if stop and stop in text else text


class RateLimiter:
    """At most `per_second` request starts per second, across threads (evenly spaced)."""

    def __init__(self, per_second: float | None) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError(f"rate limit must be > 0 requests per second, got {per_second}")
        self.interval = 0.0 if per_second is None else 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class OpenAIChatLabeler:
    """A model behind an OpenAI-compatible Chat Completions endpoint (``base_url`` ends in ``/v1``): vLLM,
    llama.cpp, Ollama, hosted APIs; a thread pool of `concurrency` requests under a rate limit."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 160,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        requests_per_second: float | None = None,
        concurrency: int = 4,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LabelerError(
                f"labeler endpoint {base_url!r} must be an http(s) URL such as http://127.0.0.1:8000/v1"
            )
        self.url, self.model, self.name = base_url.rstrip("/") + "/chat/completions", model, f"openai:{model}"
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_tokens, self.timeout = max_tokens, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.concurrency = max(1, concurrency)
        self.limiter = RateLimiter(requests_per_second)
        self.attempts = 0  # requests sent, retries included (for logs and tests)
        self._count_lock = threading.Lock()

    def chat(self, conversations: Sequence[Messages]) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self.complete, conversations))

    def complete(self, messages: Messages) -> str:
        """One conversation → the assistant's reply text, retrying transient failures."""
        body = dict(
            model=self.model, messages=messages, max_tokens=self.max_tokens, temperature=0.0, stream=False
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        last = ""
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            with self._count_lock:
                self.attempts += 1
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    return self._reply(resp.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                if exc.code not in RETRY_STATUS:
                    raise LabelerError(
                        f"{self.url} refused the request with HTTP {exc.code}: {detail}"
                    ) from exc
                last = f"HTTP {exc.code}: {detail}"
                retry_after = _retry_after(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt == self.max_retries:
                break
            delay = min(self.max_backoff, self.backoff * 2**attempt) * (1 + 0.25 * random.random())
            delay = max(delay, min(retry_after or 0.0, self.max_backoff))
            log.info("%s: %s; retry %d/%d in %.2fs", self.url, last, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise LabelerError(f"{self.url}: no answer after {self.max_retries + 1} attempts (last: {last})")

    def _reply(self, payload: bytes) -> str:
        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LabelerError(f"{self.url}: answer is not a chat completion ({payload[:200]!r})") from exc
        return content or ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None
