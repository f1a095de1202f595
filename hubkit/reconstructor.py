"""`ActivationReconstructor` (AR): explanation → vector (the first K+1 blocks, then a ``Linear(d, d)``
head on the residual at each row's last real token).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from hubkit import arch, heads, loading
from hubkit import constants as C
from hubkit.errors import CheckpointError, DataError, MetaError
from hubkit.meta import NLAMeta, resolve_scale

log = logging.getLogger(__name__)


BOS_AS_TOKENIZER = "tokenizer"
"""`ar.add_bos` value meaning "BOS exactly where the tokenizer itself adds one" (the reference rule)."""

SUFFIX_PROBE = "x"
"""Explanation rendered once at load to check the prompt's tail against `ar.suffix_ids`."""


def render_ar_prompt(template: str, text: str) -> str:
    """``template.format(explanation=text)``: the AR prompt as one string, as the reference renders it."""
    try:
        return template.format(explanation=text)
    except (KeyError, IndexError, ValueError) as exc:
        raise MetaError(
            f"`ar.template` {template!r} cannot be rendered with str.format ({type(exc).__name__}: {exc}); "
            "write literal braces as {{ and }} and keep {explanation} as the only field"
        ) from exc


def apply_bos_rule(ids: list[int], bos_id: int | None, add_bos: bool | str | None) -> list[int]:
    """`ids` under the meta's BOS rule: ``"tokenizer"``/``None`` leaves them (BOS where the tokenizer adds
    one); ``True`` forces BOS first; ``False`` drops a leading one."""
    starts = bool(ids) and bos_id is not None and ids[0] == bos_id
    if add_bos is None or add_bos == BOS_AS_TOKENIZER or (add_bos is True and (starts or bos_id is None)):
        return list(ids)
    if add_bos is True:
        return [bos_id, *ids]
    if add_bos is False:
        return list(ids[1:] if starts else ids)
    raise MetaError(f"`ar.add_bos` must be true, false or {BOS_AS_TOKENIZER!r}, got {add_bos!r}")


def build_ar_ids(tokenizer, meta: NLAMeta, text: str) -> list[int]:
    """Token ids of the AR prompt, for training and inference alike: the whole rendered prompt in one
    call (so merges across the explanation's end are the model's), then `apply_bos_rule`."""
    ar = meta.ar
    specials = ar.add_bos is not False  # False: no special tokens at all, as the LoRA-AR writer tokenizes
    ids = tokenizer(render_ar_prompt(ar.template, text), add_special_tokens=specials)["input_ids"]
    return apply_bos_rule(ids, tokenizer.bos_token_id, ar.add_bos)


def check_suffix_ids(tokenizer, meta: NLAMeta, where: str = "the AR meta") -> None:
    """Refuse a meta whose ``ar.suffix_ids`` are not the tail of the rendered prompt."""
    ar = meta.ar
    if ar is None or not ar.suffix_ids:
        return
    want = list(ar.suffix_ids)
    got = build_ar_ids(tokenizer, meta, SUFFIX_PROBE)
    if got[-len(want) :] != want:
        raise MetaError(
            f"{where}: field `ar.suffix_ids` (`tokens.critic_suffix_ids` in reference metas) is {want}, but "
            f"the AR prompt rendered from `ar.template` with this tokenizer ends with {got[-len(want) :]}: "
            "the template, the tokenizer and the recorded ids do not belong together; fix the template or "
            "the tokenizer, or drop the field"
        )


def last_token(hidden: Tensor, mask: Tensor) -> Tensor:
    """``hidden[i, last real position of row i]`` for a right-padded batch."""
    last = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


class ActivationReconstructor:
    """Reads an explanation and writes the vector it describes."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        meta: NLAMeta,
        head: nn.Linear,
        adapter_name: str | None = None,
        final_norm: nn.Module | None = None,
    ) -> None:
        if meta.ar is None:
            raise MetaError("an ActivationReconstructor needs a meta with an `ar` section")
        if head.weight.shape != (meta.d_model, meta.d_model):
            raise CheckpointError(
                f"AR head has shape {tuple(head.weight.shape)}, expected ({meta.d_model}, {meta.d_model})"
            )
        if meta.ar.num_layers > (depth := arch.num_layers(model)):
            raise MetaError(f"`ar.num_layers` is {meta.ar.num_layers} but the model has only {depth} blocks")
        if (width := arch.hidden_size(model)) != meta.d_model:
            raise MetaError(f"the meta says d_model={meta.d_model}, the model's width is {width}")
        check_suffix_ids(tokenizer, meta, str(meta.folder / C.META_FILE) if meta.folder else "the AR meta")
        self.model, self.tokenizer, self.meta, self.head = model, tokenizer, meta, head
        self.adapter_name, self.block, self.final_norm = adapter_name, meta.ar.num_layers - 1, final_norm
        if meta.ar.final_norm and final_norm is None:
            raise MetaError(
                "the meta says `ar.final_norm: true` (the read-out goes through the base's final norm) but no "
                "final norm module was given; load the AR with ActivationReconstructor.from_pretrained"
            )
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | Path,
        revision: str | None = None,
        subfolder: str | None = None,
        base_model: str | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        verify: bool = True,
    ) -> ActivationReconstructor:
        """Load an AR; `verify` checks its files against the hashes recorded with them."""
        folder, meta = loading.open_checkpoint(repo_or_dir, "ar", revision, subfolder, verify)
        head, lora_state = heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
        if (loading.is_adapter(folder) or lora_state) and not meta.base_model:
            if not base_model:
                raise CheckpointError(
                    f"{folder}: its meta names no base model ({C.AR_META_JSON} records none); pass "
                    "base_model= (--base-model in the CLI), or load it with its AV (NLAPair), whose meta names it"
                )
            meta.base_model = base_model  # the base it runs on is the one it names from now on
        model, tok, name = loading.load_half(folder, meta, base_model, device, dtype, lora_state=lora_state)
        norm = arch.final_norm(model) if meta.ar.final_norm else None
        arch.truncate(model, meta.ar.num_layers)
        head = head.to(loading.model_device(model))
        return cls(model, tok, meta, head, adapter_name=name, final_norm=norm)

    def hidden(self, texts: list[str], first_row: int = 0) -> tuple[Tensor, Tensor]:
        """Backbone output (float32) at the read-out token of each text; a prompt longer than the context
        is refused naming its row (cutting it would drop the suffix the AR reads at)."""
        rows = [build_ar_ids(self.tokenizer, self.meta, t) for t in texts]
        limit = arch.context_length(self.model)
        long = [i for i, r in enumerate(rows) if limit and len(r) > limit]
        if long:
            shown = ", ".join(f"{first_row + i + 1} ({len(rows[i]):,} tokens)" for i in long[:5])
            raise DataError(
                f"text row(s) {shown}{' …' if len(long) > 5 else ''}: longer than the AR's context of {limit} "
                "positions with its prompt; an explanation is a few sentences: shorten or drop those rows"
            )
        ids, mask = arch.right_padded([torch.tensor(r) for r in rows], self.pad_id)
        device = loading.model_device(self.model)
        ids, mask = ids.to(device), mask.to(device)
        with loading.active_adapter(self.model, self.adapter_name):
            h = arch.hidden_at_block_grad(self.model, self.block, input_ids=ids, attention_mask=mask)
            if self.final_norm is not None:
                h = self.final_norm(h)
        return last_token(h, mask).float(), mask

    def forward(self, texts: list[str]) -> Tensor:
        """Head output for `texts`, differentiable (used by training)."""
        h, _ = self.hidden(texts)
        return self._project(h)

    def _project(self, h: Tensor) -> Tensor:
        scale = resolve_scale(self.meta.mse_scale, self.meta.d_model)
        if self.meta.ar.input_norm == "mse_scale" and scale is not None:  # raw-MSE mode: no rescale
            h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12) * scale
        return self.head(h)

    def _check_finite(self, x: Tensor, part: str, first_row: int) -> None:
        """Stop with one line naming the checkpoint file when `part` produced NaN or inf."""
        # finite values whose norm is not (e.g. 3e38 everywhere) allow no cosine or MSE either
        overflow = ~torch.isfinite(x.float().norm(dim=-1))
        bad = ((~torch.isfinite(x)).any(dim=-1) | overflow).nonzero().flatten().tolist()
        if not bad:
            return
        folder = self.meta.folder or Path("AR")
        file = folder / heads.HEAD_FILES[self.meta.ar.head_format] if part == "head" else folder
        file = folder / C.ADAPTER_WEIGHTS_FILE if part != "head" and self.adapter_name else file
        raise CheckpointError(
            f"{file}: the AR's {part} gives NaN/inf for {len(bad)} row(s) (first: row {first_row + bad[0]}); its "
            "weights or scaling are broken (e.g. a huge lora_alpha or head values): use another checkpoint"
        )

    @torch.no_grad()
    def reconstruct(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> Tensor:
        """Vectors ``[N, d]`` (raw head output, float32) for explanation texts."""
        if isinstance(texts, str):
            texts = [texts]
        from tqdm.auto import tqdm

        out = []
        with tqdm(total=len(texts), desc="reconstruct", disable=not progress) as bar:  # closed on errors too
            for start in range(0, len(texts), batch_size):
                h, _ = self.hidden(list(texts[start : start + batch_size]), first_row=start)
                self._check_finite(h, "backbone", start)
                v = self._project(h)
                self._check_finite(v, "head", start)
                out.append(v.cpu())
                bar.update(len(v))
        return torch.cat(out) if out else torch.empty(0, self.meta.d_model)
