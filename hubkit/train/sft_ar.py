"""AR supervised fine-tuning: explanation → vector through the first K+1 blocks and a Linear(d, d) head.

The base is truncated before the adapter is added (a LoRA only wraps kept blocks); the head starts as the
identity. The loss is the normalised MSE ``‖v̂/‖v̂‖ − v/‖v‖‖² = 2(1 − cos)`` per row.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from hubkit import arch, heads
from hubkit.identity import hub_id
from hubkit.metrics import normalised_mse
from hubkit.reconstructor import ActivationReconstructor, build_ar_ids
from hubkit.train import metas
from hubkit.train.adapters import add_adapter, load_base, trainable
from hubkit.train.data import inner_text, read_sft
from hubkit.train.loop import Runner, RunOptions, SFTTask, run_sft
from hubkit.train.recipe import Recipe

ADAPTER_NAME = "ar"


def clip_text(tokenizer, text: str, max_length: int) -> str:
    """`text` cut to at most `max_length` tokens (unchanged when it fits)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_length else tokenizer.decode(ids[:max_length])


class ARTask(SFTTask):
    """AR SFT on an ``ar_sft`` table (see `run_sft` for the loop)."""

    stage_name = "ar_sft"
    loss_type = "normalised_mse"

    def __init__(self, recipe: Recipe, runner: Runner, data: str | Path) -> None:
        self.cfg = cfg = recipe.stage("ar")
        model, tok = load_base(recipe, cfg.adapter, runner.device, runner.dtype)
        meta = metas.ar_meta(recipe, model, cfg.adapter, cfg.head_bias, tokenizer=tok)
        self.table = read_sft(data, meta.d_model, "ar")
        arch.truncate(model, meta.ar.num_layers)
        torch.manual_seed(recipe.seed)  # the same LoRA initialisation in every run and process
        self.model = add_adapter(model, cfg.adapter, ADAPTER_NAME, cfg.gradient_checkpointing)
        if cfg.adapter.kind == "full":  # all weights train, but the LM head never runs: frozen unless tied
            out, inp = self.model.get_output_embeddings(), self.model.get_input_embeddings()
            if out is not None and out.weight is not inp.weight:
                out.weight.requires_grad_(False)
        self.adapter_name = ADAPTER_NAME if cfg.adapter.kind != "full" else None
        self.head = heads.identity_head(meta.d_model, bias=cfg.head_bias).to(runner.device)
        self.ar = ActivationReconstructor(self.model, tok, meta, self.head)
        self.meta, self.tokenizer = meta, tok
        self.texts = [clip_text(tok, inner_text(t), cfg.max_length) for t in self.table.texts]
        self.lengths = [len(build_ar_ids(tok, meta, t)) for t in self.texts]
        self.init_parent = hub_id(recipe.base_model)
        runner.shard(self.model)  # FSDP: in place, after everything that reads the whole model

    def param_groups(self) -> list[dict]:
        head_lr = self.cfg.head_lr if self.cfg.head_lr is not None else self.cfg.optim.lr
        return [{"params": trainable(self.model)}, {"params": list(self.head.parameters()), "lr": head_lr}]

    def normaliser(self, rows: list[int]) -> float:
        return float(len(rows))

    def tokens(self, rows: list[int]) -> int:
        return sum(self.lengths[i] for i in rows)

    def micro_loss(self, rows: list[int]) -> Tensor:
        pred = self.ar.forward([self.texts[i] for i in rows])
        return normalised_mse(pred, self.table.vectors[rows].to(pred.device)).sum()


def train_ar(recipe: Recipe, opts: RunOptions | None = None) -> Path:
    """Run (or resume) the recipe's AR SFT stage; returns the last checkpoint folder."""
    runner = Runner(recipe, "ar", opts or RunOptions())
    return run_sft(ARTask(recipe, runner, runner.data_path("AR training")), runner)
