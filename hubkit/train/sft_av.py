"""AV supervised fine-tuning: teacher-forced ``prompt(marker ← v) → <explanation>…</explanation><eos>``.

The vector goes in exactly as at inference (`hubkit.injection.plan` + `injected` on the right-padded
batch), and the cross-entropy counts response tokens only: the prompt is context, not a target.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from hubkit import arch, injection
from hubkit.checkpoint import verify_checkpoint
from hubkit.errors import CheckpointError, DataError, first_line
from hubkit.identity import hub_id
from hubkit.train import metas, trajectory
from hubkit.train.adapters import add_adapter, load_base
from hubkit.train.data import read_sft, tagged
from hubkit.train.loop import Runner, RunOptions, SFTTask, run_sft
from hubkit.train.recipe import Recipe
from hubkit.verbalizer import ActivationVerbalizer

log = logging.getLogger(__name__)

ADAPTER_NAME = "av"


def response_ids(tokenizer, text: str, max_length: int, open_tag: str, close_tag: str) -> list[int]:
    """Token ids the AV learns to write for one explanation: tagged text, then EOS unless it was cut."""
    ids = tokenizer(tagged(text, open_tag, close_tag), add_special_tokens=False)["input_ids"]
    return ids[:max_length] if len(ids) > max_length else [*ids, tokenizer.eos_token_id]


def av_batch(prompt_ids: list[int], responses: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, labels) for a right-padded batch; labels are −100 outside responses."""
    rows = [torch.tensor(prompt_ids + r) for r in responses]
    ids, mask = arch.right_padded(rows, pad_id)
    labels = ids.clone()
    labels[:, : len(prompt_ids)] = -100
    labels[mask == 0] = -100
    return ids, mask, labels


class AVTask(SFTTask):
    """AV SFT on an ``av_sft`` table (see `run_sft` for the loop)."""

    stage_name = "av_sft"
    loss_type = "cross_entropy_response"

    def __init__(self, recipe: Recipe, runner: Runner, data: str | Path) -> None:
        cfg = recipe.stage("av")
        model, tok = load_base(recipe, cfg.adapter, runner.device, runner.dtype)
        meta = metas.av_meta(recipe, model, tok, cfg.adapter)
        meta = metas.check_injection_scale(meta, model, runner.opts.allow_ood_injection, tokenizer=tok)
        self.table = read_sft(data, meta.d_model, "av")
        torch.manual_seed(recipe.seed)  # the same LoRA initialisation in every run and process
        self.model = add_adapter(model, cfg.adapter, ADAPTER_NAME, cfg.gradient_checkpointing)
        self.adapter_name = ADAPTER_NAME if cfg.adapter.kind != "full" else None
        self.av = ActivationVerbalizer(self.model, tok, meta)
        self.meta, self.tokenizer, self.device = self.av.meta, tok, runner.device
        av = self.meta.av
        self.responses = [
            response_ids(tok, t, cfg.max_length, av.explanation_open, av.explanation_close)
            for t in self.table.texts
        ]
        tag = len(tok(av.explanation_open, add_special_tokens=False)["input_ids"])
        if cfg.max_length <= tag:
            raise DataError(
                f"`av.max_length` is {cfg.max_length}: no more than the {av.explanation_open} tag ({tag} tokens), so "
                "nothing of the explanations would be learned; set it to their length in tokens (default 128)"
            )
        cut = sum(1 for r in self.responses if r[-1] != tok.eos_token_id)
        if cut:
            log.warning(
                "%d of %d explanations are longer than max_length=%d tokens and were cut (no EOS learned)",
                cut,
                len(self.responses),
                cfg.max_length,
            )
        mid = self.meta.injection.marker_token_id
        bad = [i for i, r in enumerate(self.responses) if mid in r]
        if bad:
            raise DataError(
                f"{self.table.path}: explanations in rows {bad[:10]} contain the marker token "
                f"{self.meta.injection.marker!r}; pick another `nla.marker` or clean those rows"
            )
        self.init_parent = hub_id(recipe.base_model)
        if cfg.init is not None:  # continued SFT: the starting weights, checked against their hashes
            start = Path(cfg.init)
            verify_checkpoint(start)
            try:
                trajectory.restore_weights(self.model, start, self.adapter_name)
            except RuntimeError as exc:  # tensors of another shape (another rank or base)
                raise CheckpointError(
                    f"field `av.init`: {start} does not fit the adapter this recipe builds "
                    f"({first_line(exc)}); make `av.adapter` match the checkpoint's"
                ) from None
            self.init_parent = str(start)
        runner.shard(self.model)  # FSDP: in place, after everything that reads the whole model

    def normaliser(self, rows: list[int]) -> float:
        return float(sum(len(self.responses[i]) for i in rows))

    def tokens(self, rows: list[int]) -> int:
        return sum(len(self.av.prompt_ids) + len(self.responses[i]) for i in rows)

    def micro_loss(self, rows: list[int]) -> Tensor:
        """Summed cross-entropy over the response tokens, the vectors injected at the marker."""
        n_prompt, inj = len(self.av.prompt_ids), self.meta.injection
        batch = av_batch(self.av.prompt_ids, [self.responses[i] for i in rows], self.tokenizer.pad_token_id)
        ids, mask, labels, vectors = (t.to(self.device) for t in (*batch, self.table.vectors[rows]))
        # logits from the last prompt token on: all that predict the response
        keep = ids.shape[1] - n_prompt + 1
        with injection.injected(self.model, inj, injection.plan(inj, ids, vectors, self.meta.d_model)):
            out = self.model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep)
        predicted = out.logits[:, :-1].flatten(0, 1).float()
        return F.cross_entropy(predicted, labels[:, n_prompt:].flatten(), ignore_index=-100, reduction="sum")


def train_av(recipe: Recipe, opts: RunOptions | None = None) -> Path:
    """Run (or resume) the recipe's AV SFT stage; returns the last checkpoint folder."""
    runner = Runner(recipe, "av", opts or RunOptions())
    return run_sft(AVTask(recipe, runner, runner.data_path("AV training")), runner)
