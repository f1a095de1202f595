"""`ActivationVerbalizer` (AV): vector → explanation.

Every row reads the same prompt, so the KV cache of the prompt up to the first marker is computed once
per batch (nothing before the marker depends on the vector).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from hubkit import arch, engines, injection, loading
from hubkit import constants as C
from hubkit.engines import source as sources
from hubkit.errors import CheckpointError, EngineError, InjectionError, MetaError
from hubkit.meta import MARKER_PLACEHOLDER, NLAMeta
from hubkit.vectors import check_vectors

log = logging.getLogger(__name__)

Status = Literal["ok", "no_tags", "unclosed", "empty"]

DEFAULT_BATCH_SIZE = 32
"""Rows generated together by default. Fastest of 8/16/32 on a 2-core CPU (SmolLM2-135M, bf16, 32 rows
x 8 tokens: 24-35 s at 32, 36-49 s at 16, 46-93 s at 8); `benchmarks/bench_round_trip.py --sweep` times it."""


@dataclass(frozen=True)
class Explanation:
    """One AV output: the parsed explanation, the raw generation, and how parsing went."""

    text: str
    raw: str
    status: Status
    n_tokens: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_explanation(raw: str, open_tag: str, close_tag: str) -> tuple[str, Status]:
    """The text inside the first ``open…close`` pair; flags outputs without tags or with nothing in them."""
    start = raw.find(open_tag)
    body = raw if start < 0 else raw[start + len(open_tag) :]
    end = -1 if start < 0 else body.find(close_tag)
    text = (body if end < 0 else body[:end]).strip()
    return text, "empty" if not text else "no_tags" if start < 0 else "unclosed" if end < 0 else "ok"


def render_prompt(tokenizer, template: str, marker: str, chat: bool) -> str:
    """The AV prompt as text: the marker in the template, wrapped in the chat template if asked."""
    content = template.replace(MARKER_PLACEHOLDER, marker)
    if not chat:
        return content
    if not getattr(tokenizer, "chat_template", None):
        raise MetaError(
            "the meta asks for the chat template (`av.chat_template: true`) but the tokenizer has none"
        )
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def resolve_marker(meta: NLAMeta, tokenizer) -> NLAMeta:
    """Fill in (or verify) the marker token id and its neighbours from the tokenizer and prompt."""
    inj, av = meta.injection, meta.av
    if inj.marker is None and inj.marker_token_id is None:
        render = functools.partial(render_prompt, tokenizer, av.template, chat=av.chat_template)
        marker = injection.pick_marker(tokenizer, render)
        log.info("the meta records no marker; picked %r, the first single-token candidate", marker)
    elif inj.marker is None:
        marker = marker_from_id(tokenizer, inj.marker_token_id)
    else:
        marker = inj.marker
    prompt = render_prompt(tokenizer, av.template, marker, av.chat_template)
    mid, left, right = injection.marker_ids(tokenizer, prompt, marker, av.template.count(MARKER_PLACEHOLDER))
    found = {"marker_token_id": mid, "left_neighbor_id": left, "right_neighbor_id": right}
    for name, got in found.items():
        if (want := getattr(inj, name)) is not None and want != got:
            raise MetaError(
                f"`injection.{name}` is {want} but marker {marker!r} in the rendered prompt gives {got} for this "
                "tokenizer: the checkpoint and tokenizer do not belong together"
            )
    return meta.with_updates(injection=dataclasses.replace(inj, marker=marker, **found))


def marker_from_id(tokenizer, token_id: int) -> str:
    """The text whose tokenization is exactly ``[token_id]`` (for dialects that record only the id)."""
    for candidate in (tokenizer.decode([token_id]), tokenizer.convert_ids_to_tokens(token_id)):
        if not isinstance(candidate, str):
            continue
        if tokenizer(candidate, add_special_tokens=False)["input_ids"] == [token_id]:
            return candidate
    raise MetaError(
        f"`injection.marker_token_id` {token_id} does not round-trip through this tokenizer as one token; "
        "add `injection.marker` (the character) to the meta"
    )


@functools.cache
def _generate_cache_kwarg() -> str:
    """`generate`'s name for a ready KV cache: ``cache`` in newer transformers, ``past_key_values`` before."""
    from transformers import GenerationMixin

    prepare = getattr(GenerationMixin, "_prepare_cache_for_generation", None)
    try:
        newer = prepare is not None and 'model_kwargs.get("cache")' in inspect.getsource(prepare)
    except (OSError, TypeError):  # pragma: no cover - source unavailable
        newer = False
    return "cache" if newer else "past_key_values"


def stop_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """Every EOS id of the model config, generation config (Gemma-3-IT's ``<end_of_turn>``) and tokenizer."""
    configs = (model.config, arch.text_config(model), getattr(model, "generation_config", None))
    ids = [getattr(cfg, "eos_token_id", None) for cfg in configs] + [tokenizer.eos_token_id]
    flat = [i for v in ids for i in ([v] if isinstance(v, int) else v or ())]
    return list(dict.fromkeys(int(i) for i in flat if i is not None))


class ActivationVerbalizer:
    """Turns residual-stream vectors into written explanations."""

    def __init__(self, model: nn.Module, tokenizer, meta: NLAMeta, adapter_name: str | None = None) -> None:
        if meta.role != "av":
            raise MetaError(f"an ActivationVerbalizer needs an AV meta, got role {meta.role!r}")
        self.model, self.tokenizer, self.adapter_name = model, tokenizer, adapter_name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.meta = resolve_marker(meta, tokenizer)
        av = self.meta.av
        self.prompt = render_prompt(tokenizer, av.template, self.meta.injection.marker, av.chat_template)
        encoded = tokenizer(self.prompt, add_special_tokens=not av.chat_template)
        self.prompt_ids: list[int] = encoded["input_ids"]
        self.slots = av.template.count(MARKER_PLACEHOLDER)
        self.stop_ids = stop_token_ids(model, tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | Path,
        revision: str | None = None,
        subfolder: str | None = None,
        base_model: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        injection_scale: float | str | None = None,
        verify: bool = True,
    ) -> ActivationVerbalizer:
        """Load an AV; `injection_scale` overrides the meta's, `verify` checks the files' recorded sha256."""
        folder, meta = loading.open_checkpoint(
            repo_or_dir, "av", revision, subfolder, verify, injection_scale
        )
        model, tok, name = loading.load_half(folder, meta, base_model, device, dtype)
        return cls(model, tok, meta, adapter_name=name)

    # -- inputs -------------------------------------------------------------------------------
    def check(self, vectors: Tensor) -> Tensor:
        """Vectors as ``[N, d]`` (one marker) or ``[N, k, d]`` (k markers in the prompt), checked."""
        v = check_vectors(vectors, d_model=self.meta.d_model, nla_input=True, slots=True)
        if v.ndim == 3 and v.shape[1] == 1:
            v = v[:, 0]
        k = v.shape[1] if v.ndim == 3 else 1
        if k != self.slots:
            raise InjectionError(
                f"vectors of shape {tuple(v.shape)} give {k} vector(s) per row but the AV prompt holds "
                f"{self.slots} marker(s) (`av.template`); pass [N, {self.slots}, {self.meta.d_model}]"
            )
        return v

    def _ids(self, n: int, device: torch.device | None = None) -> Tensor:
        return torch.tensor([self.prompt_ids] * n, device=device)

    def prefix_length(self) -> int:
        """Prompt tokens before the first marker: the same for every row, cached once per batch. At least two
        stay uncached, so the first uncached forward is never mistaken for a one-token decoding step by the hook."""
        inj = self.meta.injection
        marker = (inj.marker_token_id, inj.left_neighbor_id, inj.right_neighbor_id)
        pos = injection.find_markers(torch.tensor([self.prompt_ids]), *marker, self.slots, per_row=self.slots)
        return max(0, min(int(pos.min()), len(self.prompt_ids) - 2))

    @torch.no_grad()
    def prompt_embeddings(self, vectors: Tensor) -> list[Tensor]:
        """Per row, ``inputs_embeds`` ``[T, d]`` with the vector(s) injected, as the transformers path has."""
        scheme = injection.SCHEMES.get(self.meta.injection.scheme)
        if not scheme.embeds_only:
            raise EngineError(
                f"injection scheme {scheme.name!r} edits a decoder block's output, not the input embeddings: "
                "it needs the transformers engine (engine=None)"
            )
        v = self.check(vectors)
        ids = self._ids(len(v), loading.model_device(self.model))
        p = injection.plan(self.meta.injection, ids, v, self.meta.d_model)
        with loading.active_adapter(self.model, self.adapter_name):
            with injection.injected(self.model, self.meta.injection, p):
                return list(arch.text_model(self.model).embed_tokens(ids).unbind(0))

    # -- inference ----------------------------------------------------------------------------
    def explain_detailed(
        self,
        vectors: Tensor,
        batch_size: int | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        num_return_sequences: int = 1,
        progress: bool = False,
        min_new_tokens: int = 0,
        engine: str | None = None,
        prefix_cache: bool = True,
    ) -> list[Explanation]:
        """Explanations for `vectors` ``[N, d]`` or ``[N, k, d]``; an `engine` other than transformers is
        fed the prompt embeddings."""
        v = self.check(vectors)
        check_length(self.model, len(self.prompt_ids), max_new_tokens, min_new_tokens)
        out: list[Explanation] = []
        if seed is not None:
            torch.manual_seed(seed)
        from tqdm.auto import tqdm

        opts = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample)
        sampling = engines.Sampling(temperature=temperature, top_p=top_p, **opts)
        name = None if engine is None else engines.resolve(engine, self.meta.injection.scheme)
        if name not in (None, "transformers"):
            try:
                rows = self.generate_on_engine(v, name, num_return_sequences, seed, sampling)
                return self.decode_rows(rows)
            except EngineError as err:
                if engine != "auto":
                    raise
                log.warning("engine auto: %s; generating with transformers instead", err)
        step = batch_size or DEFAULT_BATCH_SIZE
        # a context manager: the bar is closed (its line ended) when a batch fails, so the error stands alone
        with tqdm(total=len(v), desc="explain", disable=not progress, unit="vec") as bar:
            for start in range(0, len(v), step):
                chunk = v[start : start + step].repeat_interleave(num_return_sequences, dim=0)
                out.extend(self.decode_rows(self._generate(chunk, sampling, prefix_cache)))
                bar.update(len(v[start : start + step]))
        return out

    def explain(self, vectors: Tensor, **kwargs) -> list[str]:
        """Explanation texts for `vectors` ``[N, d]`` (see `explain_detailed` for options and statuses)."""
        return [e.text for e in self.explain_detailed(vectors, **kwargs)]

    def generate_on_engine(
        self, v: Tensor, engine: str, k: int, seed: int | None, sampling: engines.Sampling
    ) -> list[list[int]]:
        """New token ids per row (`k` per vector) from a resolved `engine`, in chunks."""
        source = None
        if engines.kind(engine).loads_weights:
            source = sources.source_for(self.model, self.adapter_name, quant=self.meta.adapter.quant)
        adapter = source.adapter if source else sources.adapter_folder(self.model, self.adapter_name)
        runner = engines.get_engine(engine, source)
        sampling = dataclasses.replace(sampling, stop_token_ids=tuple(self.stop_ids), adapter=adapter)
        rows, chunk = v.repeat_interleave(k, dim=0), engines.ENGINE_CHUNK
        ids: list[list[int]] = []
        for start in range(0, len(rows), chunk):
            part = dataclasses.replace(sampling, seed=None if seed is None else seed + start)
            ids += runner.generate_from_embeddings(self.prompt_embeddings(rows[start : start + chunk]), part)
        return ids

    def _prefix_cache(self, n: int, length: int):
        """The KV cache of the first `length` prompt tokens, computed once and repeated for `n` rows."""
        ids = self._ids(1, loading.model_device(self.model))[:, :length]
        out = self.model(input_ids=ids, use_cache=True)
        cache = out["cache"] if "cache" in out else out.past_key_values  # named `cache` in newer transformers
        cache.batch_repeat_interleave(n)
        return cache

    @torch.no_grad()
    def _generate(self, v: Tensor, sampling: engines.Sampling, prefix_cache: bool = True) -> list[list[int]]:
        from transformers import LogitsProcessorList

        o = sampling
        ids = self._ids(len(v), loading.model_device(self.model))
        p = injection.plan(self.meta.injection, ids, v, self.meta.d_model)
        finite = LogitsProcessorList([FiniteLogits(self.meta.folder, self.adapter_name)])
        gen_kwargs: dict = dict(logits_processor=finite, use_cache=True, do_sample=o.do_sample)
        gen_kwargs.update(max_new_tokens=o.max_new_tokens, min_new_tokens=o.min_new_tokens)
        gen_kwargs.update(pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.stop_ids)
        if o.do_sample:
            gen_kwargs.update(temperature=o.temperature, top_p=o.top_p, top_k=0)
        with loading.active_adapter(self.model, self.adapter_name):
            cached = self.prefix_length() if prefix_cache else 0
            if cached:
                gen_kwargs[_generate_cache_kwarg()] = self._prefix_cache(len(v), cached)
                p = injection.shift_plan(p, cached)
            with injection.injected(self.model, self.meta.injection, p):
                seqs = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
        return seqs[:, ids.shape[1] :].tolist()

    def decode(self, new_tokens: Tensor) -> list[Explanation]:
        """Parse generated token rows (prompt removed) into explanations (see `decode_rows`)."""
        return self.decode_rows(new_tokens.tolist())

    def decode_rows(self, rows: list[list[int]]) -> list[Explanation]:
        """Parse generated token rows into explanations; each row ends at its first stop id (or padding)."""
        av, stops, pad = self.meta.av, set(self.stop_ids), self.tokenizer.pad_token_id
        out = []
        for row in rows:
            n = next((i for i, t in enumerate(row) if t in stops or t == pad), len(row))
            raw = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            text, status = parse_explanation(raw, av.explanation_open, av.explanation_close)
            out.append(Explanation(text=text, raw=raw, status=status, n_tokens=n))
        return out


def check_length(model: nn.Module, prompt_tokens: int, max_new_tokens: int, min_new_tokens: int = 0) -> None:
    """Refuse a generation length the model cannot hold (prompt + new tokens beyond its positions)."""
    limit = arch.context_length(model)
    if min_new_tokens > max_new_tokens:
        raise InjectionError(
            f"min_new_tokens {min_new_tokens} is above max_new_tokens {max_new_tokens}; lower --min-new-tokens"
        )
    if limit and prompt_tokens + max_new_tokens > limit:
        raise InjectionError(
            f"max_new_tokens {max_new_tokens} + the AV prompt's {prompt_tokens} tokens exceed the model's context of "
            f"{limit} positions; lower --max-new-tokens to at most {limit - prompt_tokens}"
        )


class FiniteLogits:
    """A logits processor that stops generation at the first NaN/inf score, naming the AV's weights: NaN
    logits would otherwise decode as token 0 over and over (empty or junk text with exit 0)."""

    def __init__(self, folder: Path | None, adapter_name: str | None) -> None:
        where = folder or Path("AV")
        self.file = where / C.ADAPTER_WEIGHTS_FILE if adapter_name else where

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        # -inf is how other processors ban a token (min_new_tokens bans EOS); NaN, +inf or a row of only -inf is not
        broken = (torch.isnan(scores) | torch.isposinf(scores)).any(dim=-1) | torch.isneginf(scores).all(-1)
        if broken.any():
            rows = broken.nonzero().flatten().tolist()
            raise CheckpointError(
                f"{self.file}: the AV gives NaN/inf logits for {len(rows)} row(s) of the batch after "
                f"{input_ids.shape[1]} tokens; its weights or scaling are broken (e.g. a huge lora_alpha): "
                "use another checkpoint"
            )
        return scores
