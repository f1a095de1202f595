"""The LoRA-AR layout written the way its public writer (asherps/EasyNLA ``nla/train_sft.py``) writes
it, with this test suite's own code, and that writer's documented forward as the independent answer.

Writer behaviour reproduced (from its source, not from hubkit's reading): the base truncated to
``ar_num_layers`` blocks, the final norm replaced by identity only when ``final_norm_stripped``,
rank-stabilised LoRA injected in place into the backbone (keys
``backbone.model.layers.N.….lora_A.default.weight``), an fp32 ``value_head`` (``Linear(d, d,
bias=False)``), ``ar_meta.json`` without base model or width. Its critic reads the AR prompt
tokenized with ``add_special_tokens=False``, takes the backbone's last hidden state at the last token
(after the final norm when it was kept), normalises it to ``mse_scale`` and applies the head in fp32.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import save_file
from torch import nn
from transformers import AutoModelForCausalLM

AR_TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"
TARGETS = ["q_proj", "v_proj", "down_proj"]


class WriterCritic(nn.Module):
    """The writer's critic: ``backbone`` (a truncated causal LM) and ``value_head``."""

    def __init__(self, backbone: nn.Module, d: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(d, d, bias=False)


def build_critic(base_dir: Path, n_keep: int, stripped: bool, rslora: bool, seed: int) -> WriterCritic:
    backbone = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    inner = backbone.model
    inner.layers = nn.ModuleList(list(inner.layers)[:n_keep])
    backbone.config.num_hidden_layers = n_keep
    if stripped:
        inner.norm = nn.Identity()
    backbone.lm_head = nn.Identity()
    d = backbone.config.hidden_size
    critic = WriterCritic(backbone, d)
    inject_adapter_in_model(
        LoraConfig(
            r=4, lora_alpha=16, lora_dropout=0.0, bias="none", use_rslora=rslora, target_modules=TARGETS
        ),
        critic.backbone,
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in critic.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        critic.value_head.weight.copy_(torch.eye(d) + 0.05 * torch.randn(d, d, generator=g))
    return critic.float().eval()


def write_lora_ar(folder: Path, critic: WriterCritic, tokenizer, n_keep: int, stripped: bool | None) -> Path:
    """Save the way the writer saves: lora_ and value_head tensors in one file, ar_meta.json, tokenizer.

    `stripped` None leaves `final_norm_stripped` out (checkpoints written before it was recorded)."""
    folder.mkdir(parents=True, exist_ok=True)
    sd = {
        n: p.detach().cpu().contiguous()
        for n, p in critic.named_parameters()
        if "lora_" in n or n.startswith("value_head")
    }
    save_file(sd, str(folder / "ar_lora_value_head.safetensors"))
    meta = {"ar_num_layers": n_keep, "lora_r": 4, "lora_alpha": 16, "quant": None, "target_modules": TARGETS}
    if stripped is not None:
        meta["final_norm_stripped"] = stripped
    (folder / "ar_meta.json").write_text(json.dumps(meta, indent=2))
    tokenizer.save_pretrained(str(folder))
    return folder


@torch.no_grad()
def writer_predict(
    critic: WriterCritic, tokenizer, texts: list[str], mse_scale: float | None
) -> torch.Tensor:
    """One text at a time: ids without special tokens, inner model's last hidden state, normalise, head."""
    out = []
    for text in texts:
        ids = tokenizer.encode(AR_TEMPLATE.format(explanation=text), add_special_tokens=False)
        h = (
            critic.backbone.model(input_ids=torch.tensor([ids]), use_cache=False)
            .last_hidden_state[0, -1]
            .float()
        )
        if mse_scale is not None:
            h = h / (h.norm().clamp_min(1e-12) / mse_scale)
        out.append(critic.value_head(h.float()).float())
    return torch.stack(out)


def sqrt_d(d: int) -> float:
    return math.sqrt(d)
