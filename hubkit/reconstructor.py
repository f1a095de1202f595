"""`ActivationReconstructor` (AR): explanation → vector.

The base truncated to its first K+1 blocks (no final norm, no LM head) reads a fixed prompt
around the explanation; the residual stream at the last real token goes through a ``Linear(d, d)``
head. Batches are right-padded so every row keeps its own positions, and the vector is gathered
at each row's last real token.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from hubkit import arch, heads, hub, loading
from hubkit.errors import CheckpointError, MetaError
from hubkit.meta import EXPLANATION_PLACEHOLDER, NLAMeta

log = logging.getLogger(__name__)


def build_ar_ids(tokenizer, meta: NLAMeta, text: str) -> list[int]:
    """Token ids of the AR prompt for one explanation.

    The part after ``{explanation}`` is tokenized on its own (or taken from ``ar.suffix_ids``), so
    the read-out token is the same whatever the explanation ends with.
    """
    ar = meta.ar
    assert ar is not None
    prefix, suffix = ar.template.split(EXPLANATION_PLACEHOLDER)
    ids = tokenizer(prefix + text, add_special_tokens=False)["input_ids"]
    ids += (
        ar.suffix_ids
        if ar.suffix_ids is not None
        else tokenizer(suffix, add_special_tokens=False)["input_ids"]
    )
    bos = tokenizer.bos_token_id
    if ar.add_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    return ids


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def last_token(hidden: Tensor, mask: Tensor) -> Tensor:
    """``hidden[i, last real position of row i]`` for a right-padded batch."""
    last = mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


class ActivationReconstructor:
    """Reads an explanation and writes the vector it describes."""

    def __init__(
        self, model: nn.Module, tokenizer, meta: NLAMeta, head: nn.Linear, adapter_name: str | None = None
    ) -> None:
        if meta.ar is None:
            raise MetaError("an ActivationReconstructor needs a meta with an `ar` section")
        if head.weight.shape != (meta.d_model, meta.d_model):
            raise CheckpointError(
                f"AR head has shape {tuple(head.weight.shape)}, expected ({meta.d_model}, {meta.d_model})"
            )
        depth = arch.num_layers(model)
        if meta.ar.num_layers > depth:
            raise MetaError(f"`ar.num_layers` is {meta.ar.num_layers} but the model has only {depth} blocks")
        if arch.hidden_size(model) != meta.d_model:
            raise MetaError(
                f"the meta says d_model={meta.d_model}, the model's width is {arch.hidden_size(model)}"
            )
        self.model, self.tokenizer, self.meta, self.head = model, tokenizer, meta, head
        self.adapter_name = adapter_name
        self.block = meta.ar.num_layers - 1
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
    ) -> ActivationReconstructor:
        folder = hub.resolve(repo_or_dir, revision=revision, subfolder=subfolder)
        meta = NLAMeta.load(folder)
        if meta.ar is None or meta.role != "ar":
            raise MetaError(f"{folder}: this is an {meta.role.upper()} checkpoint, not an AR")
        dt = loading.parse_dtype(dtype)
        head, lora_state = heads.load_head(folder, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
        if loading.is_adapter(folder) or lora_state:
            base = loading.resolve_base(base_model or meta.base_model)
            model = loading.load_causal_lm(base, dt, device, meta.adapter.quant)
            if loading.is_adapter(folder):
                model = loading.attach_adapter(model, folder, "ar")
            else:
                model = attach_lora_state(model, meta, lora_state, folder)
            tok = loading.load_tokenizer(folder, base)
            name = "ar"
        else:
            model = loading.load_causal_lm(str(folder), dt, device)
            tok = loading.load_tokenizer(folder, base_model and loading.resolve_base(base_model))
            name = None
        arch.truncate(model, meta.ar.num_layers)
        head = head.to(loading.model_device(model))
        return cls(model.eval(), tok, meta, head, adapter_name=name)

    def hidden(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """Backbone output (float32) at the read-out token of each text, before normalisation and head."""
        rows = [build_ar_ids(self.tokenizer, self.meta, t) for t in texts]
        ids, mask = pad_right(rows, self.pad_id)
        device = loading.model_device(self.model)
        ids, mask = ids.to(device), mask.to(device)
        with loading.active_adapter(self.model, self.adapter_name):
            h = arch.hidden_at_block_grad(self.model, self.block, input_ids=ids, attention_mask=mask)
        return last_token(h, mask).float(), mask

    def forward(self, texts: list[str]) -> Tensor:
        """Head output for `texts`, differentiable (used by training)."""
        h, _ = self.hidden(texts)
        if self.meta.ar.input_norm == "mse_scale":
            h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12) * self.meta.mse_scale_value()
        return self.head(h)

    @torch.no_grad()
    def reconstruct(self, texts: list[str], batch_size: int = 32, progress: bool = False) -> Tensor:
        """Vectors ``[N, d]`` (raw head output, float32) for explanation texts."""
        if isinstance(texts, str):
            texts = [texts]
        from tqdm.auto import tqdm

        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="reconstruct", disable=not progress):
            out.append(self.forward(list(texts[start : start + batch_size])).cpu())
        if not out:
            return torch.empty(0, self.meta.d_model)
        return torch.cat(out)


def attach_lora_state(model: nn.Module, meta: NLAMeta, state: dict[str, Tensor], folder: Path) -> nn.Module:
    """Build the LoRA the consumer-GPU AR describes in its meta and load its tensors from the head file."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    a = meta.adapter
    if a.r is None or a.target_modules is None:
        raise CheckpointError(
            f"{folder}: LoRA tensors in the head file but no `lora_r`/`target_modules` in its meta"
        )
    cfg = LoraConfig(r=a.r, lora_alpha=a.alpha or a.r, target_modules=a.target_modules, lora_dropout=0.0)
    peft_model = get_peft_model(model, cfg, adapter_name="ar")
    result = set_peft_model_state_dict(peft_model, state, adapter_name="ar")
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise CheckpointError(f"{folder}: LoRA tensors that match no module of the base: {missing[:5]}")
    return peft_model
