"""`ActivationVerbalizer` (AV): vector → explanation, batched with left padding and a KV cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from hubkit import arch, hub, injection, loading
from hubkit.errors import InjectionError, MetaError
from hubkit.meta import MARKER_PLACEHOLDER, NLAMeta

log = logging.getLogger(__name__)

Status = Literal["ok", "no_tags", "unclosed", "empty"]
ENGINE_CHUNK = 1024
"""Rows handed to an external engine per call (it batches them itself; this bounds the embeddings held)."""


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
    if start < 0:
        text = raw.strip()
        return text, "no_tags" if text else "empty"
    body = raw[start + len(open_tag) :]
    end = body.find(close_tag)
    if end < 0:
        text = body.strip()
        return text, "unclosed" if text else "empty"
    text = body[:end].strip()
    return text, "ok" if text else "empty"


def render_prompt(tokenizer, template: str, marker: str, chat: bool) -> str:
    """The AV prompt as text: the marker in the template, wrapped in the chat template if asked."""
    content = template.replace(MARKER_PLACEHOLDER, marker)
    if not chat:
        return content
    if not getattr(tokenizer, "chat_template", None):
        raise MetaError(
            "the meta asks for the chat template (`av.chat_template: true`) but the tokenizer has none"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def resolve_marker(meta: NLAMeta, tokenizer) -> NLAMeta:
    """Fill in (or verify) the marker token id and its neighbours from the tokenizer and prompt."""
    inj, av = meta.injection, meta.av
    assert inj is not None and av is not None
    if inj.marker is None and inj.marker_token_id is None:
        marker = injection.pick_marker(
            tokenizer, lambda c: render_prompt(tokenizer, av.template, c, av.chat_template)
        )
        log.info("the meta records no marker; picked %r, the first single-token candidate", marker)
    elif inj.marker is None:
        marker = marker_from_id(tokenizer, inj.marker_token_id)
    else:
        marker = inj.marker
    prompt = render_prompt(tokenizer, av.template, marker, av.chat_template)
    mid, left, right = injection.marker_ids(tokenizer, prompt, marker)
    if inj.marker_token_id is not None and inj.marker_token_id != mid:
        raise MetaError(
            f"`injection.marker_token_id` is {inj.marker_token_id} but marker {marker!r} is token {mid} for this "
            "tokenizer: the checkpoint and tokenizer do not belong together"
        )
    for name, want, got in (
        ("left_neighbor_id", inj.left_neighbor_id, left),
        ("right_neighbor_id", inj.right_neighbor_id, right),
    ):
        if want is not None and want != got:
            raise MetaError(
                f"`injection.{name}` is {want} but the rendered prompt has {got} next to the marker"
            )
    new_inj = type(inj)(
        **{
            **inj.__dict__,
            "marker": marker,
            "marker_token_id": mid,
            "left_neighbor_id": inj.left_neighbor_id if inj.left_neighbor_id is not None else left,
            "right_neighbor_id": inj.right_neighbor_id if inj.right_neighbor_id is not None else right,
        }
    )
    return meta.with_updates(injection=new_inj)


def marker_from_id(tokenizer, token_id: int) -> str:
    """The text whose tokenization is exactly ``[token_id]`` (for dialects that record only the id)."""
    for candidate in (tokenizer.decode([token_id]), tokenizer.convert_ids_to_tokens(token_id)):
        if isinstance(candidate, str) and tokenizer(candidate, add_special_tokens=False)["input_ids"] == [
            token_id
        ]:
            return candidate
    raise MetaError(
        f"`injection.marker_token_id` {token_id} does not round-trip through this tokenizer as one token; "
        "add `injection.marker` (the character) to the meta"
    )


class ActivationVerbalizer:
    """Turns residual-stream vectors into written explanations."""

    def __init__(self, model: nn.Module, tokenizer, meta: NLAMeta, adapter_name: str | None = None) -> None:
        if meta.role != "av":
            raise MetaError(f"an ActivationVerbalizer needs an AV meta, got role {meta.role!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.adapter_name = adapter_name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.meta = resolve_marker(meta, tokenizer)
        self.prompt = render_prompt(
            tokenizer, self.meta.av.template, self.meta.injection.marker, self.meta.av.chat_template
        )
        self.prompt_ids: list[int] = tokenizer(
            self.prompt, add_special_tokens=not self.meta.av.chat_template
        )["input_ids"]

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | Path,
        revision: str | None = None,
        subfolder: str | None = None,
        base_model: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> ActivationVerbalizer:
        folder = hub.resolve(repo_or_dir, revision=revision, subfolder=subfolder)
        meta = NLAMeta.load(folder)
        if meta.role != "av":
            raise MetaError(f"{folder}: this is an {meta.role.upper()} checkpoint, not an AV")
        dt = loading.parse_dtype(dtype)
        if loading.is_adapter(folder):
            base = loading.resolve_base(base_model or meta.base_model)
            model = loading.load_causal_lm(base, dt, device, meta.adapter.quant)
            model = loading.attach_adapter(model, folder, "av")
            tok = loading.load_tokenizer(folder, base)
        else:
            model = loading.load_causal_lm(str(folder), dt, device)
            tok = loading.load_tokenizer(folder, base_model and loading.resolve_base(base_model))
        return cls(model.eval(), tok, meta, adapter_name="av" if loading.is_adapter(folder) else None)

    # -- inference ----------------------------------------------------------------------------
    def _batch(self, n: int) -> tuple[Tensor, Tensor]:
        ids = torch.tensor([self.prompt_ids] * n)
        return ids, torch.ones_like(ids)

    def explain_detailed(
        self,
        vectors: Tensor,
        batch_size: int = 16,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        num_return_sequences: int = 1,
        progress: bool = False,
        engine: str | None = None,
    ) -> list[Explanation]:
        """Explanations for `vectors` ``[N, d]``; with sampling, `num_return_sequences` per vector.

        `engine` (`hubkit.engines`): None/"transformers" generates here; "vllm", a vllm serve URL or
        "auto" send `prompt_embeddings` to that engine, all rows at once (it batches itself).
        """
        from hubkit import engines

        v = injection.check_vectors(vectors, self.meta.d_model)
        name = engines.resolve(engine, self.meta.injection.scheme)
        if name != "transformers":
            try:
                return self._generate_on(
                    name, v, max_new_tokens, do_sample, temperature, top_p, seed, num_return_sequences
                )
            except engines.EngineError as err:
                if engines.normalise(engine) != "auto":
                    raise
                log.warning("engine auto: %s; generating with transformers instead", err)
        out: list[Explanation] = []
        if seed is not None:
            torch.manual_seed(seed)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(v), desc="explain", disable=not progress, unit="vec")
        for start in range(0, len(v), batch_size):
            chunk = v[start : start + batch_size]
            out.extend(
                self._generate(chunk, max_new_tokens, do_sample, temperature, top_p, num_return_sequences)
            )
            bar.update(len(chunk))
        bar.close()
        return out

    def explain(self, vectors: Tensor, **kwargs) -> list[str]:
        """Explanation texts for `vectors` ``[N, d]`` (see `explain_detailed` for statuses)."""
        return [e.text for e in self.explain_detailed(vectors, **kwargs)]

    @torch.no_grad()
    def _generate(
        self, v: Tensor, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, k: int
    ) -> list[Explanation]:
        vv = v.repeat_interleave(k, dim=0)
        ids, mask = self._batch(len(vv))
        device = loading.model_device(self.model)
        ids, mask = ids.to(device), mask.to(device)
        p = injection.plan(self.meta.injection, ids, vv, self.meta.d_model)
        gen_kwargs = dict(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            use_cache=True,
        )
        if do_sample:
            gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        with (
            loading.active_adapter(self.model, self.adapter_name),
            injection.injected(self.model, self.meta.injection, p),
        ):
            seqs = self.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
        return self.decode(seqs[:, ids.shape[1] :])

    @torch.no_grad()
    def prompt_embeddings(self, vectors: Tensor) -> list[Tensor]:
        """Per row, the input embeddings ``[T, d]`` the transformers path feeds the model, the vector
        already at the marker (embedding replacement; the model's own embedding scaling applied)."""
        if self.meta.injection.scheme != "embedding_replace":
            raise InjectionError(
                f"prompt embeddings express only embedding_replace; this AV injects by {self.meta.injection.scheme}"
            )
        v = injection.check_vectors(vectors, self.meta.d_model)
        ids, _ = self._batch(len(v))
        ids = ids.to(loading.model_device(self.model))
        p = injection.plan(self.meta.injection, ids, v, self.meta.d_model)
        with loading.active_adapter(self.model, self.adapter_name):
            emb = arch.text_model(self.model).embed_tokens(ids)
        return list(injection.replace_rows(emb, p.positions, p.vectors).unbind(0))

    def _generate_on(
        self,
        name: str,
        v: Tensor,
        max_new_tokens: int,
        do_sample: bool,
        temperature: float,
        top_p: float,
        seed: int | None,
        k: int,
    ) -> list[Explanation]:
        """Generate on engine `name` (vllm or a URL) from `prompt_embeddings`; decode as `_generate` does."""
        from hubkit import engines
        from hubkit.engines import source

        src = None
        if name == "vllm":
            src = source.source_for(self.model, self.adapter_name, quant=self.meta.adapter.quant)
        adapter = src.adapter if src is not None else source.adapter_folder(self.model, self.adapter_name)
        engine = engines.get_engine(name, src)
        vv = v.repeat_interleave(k, dim=0)
        ids: list[list[int]] = []
        for start in range(0, len(vv), ENGINE_CHUNK):
            ids += engine.generate_from_embeddings(
                self.prompt_embeddings(vv[start : start + ENGINE_CHUNK]),
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                temperature=temperature,
                top_p=top_p,
                seed=None if seed is None else seed + start,
                stop_token_ids=[self.tokenizer.eos_token_id],
                adapter=adapter,
            )
        rows = torch.full((len(ids), max((len(r) for r in ids), default=0)), self.tokenizer.eos_token_id)
        for i, r in enumerate(ids):
            rows[i, : len(r)] = torch.tensor(r, dtype=rows.dtype)
        return self.decode(rows)

    def decode(self, new_tokens: Tensor) -> list[Explanation]:
        """Parse generated token rows (prompt removed) into explanations; padding after EOS is dropped."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        out = []
        for row in new_tokens.tolist():
            n = len(row)
            for i, t in enumerate(row):
                if t == eos or (t == pad and pad != eos):
                    n = i
                    break
            raw = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            text, status = parse_explanation(
                raw, self.meta.av.explanation_open, self.meta.av.explanation_close
            )
            out.append(Explanation(text=text, raw=raw, status=status, n_tokens=n))
        return out


def count_statuses(explanations: list[Explanation]) -> dict[str, int]:
    counts = {"ok": 0, "no_tags": 0, "unclosed": 0, "empty": 0}
    for e in explanations:
        counts[e.status] += 1
    return counts
