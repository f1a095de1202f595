"""Where GRPO's rollouts are sampled: in process (the policy's `generate`, the vector injected by the
hook) or on a generation engine (`hubkit.engines`) given the policy's current LoRA adapter every step.

Both return the new tokens as ``generate`` leaves them: a row that stopped has its stop token, then
padding to the longest row, so the response mask and the log-probs are computed the same way."""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from hubkit import engines, injection
from hubkit.engines import Sampling
from hubkit.errors import HubkitError
from hubkit.train.fsdp import gathered, is_sharded
from hubkit.train.recipe import GRPORecipe
from hubkit.verbalizer import ActivationVerbalizer

log = logging.getLogger(__name__)


def sample_in_process(av: ActivationVerbalizer, ids: Tensor, vv: Tensor, cfg: GRPORecipe) -> Tensor:
    """New tokens ``[N, T]`` sampled by `av`'s model (the vector injected by the hook), padded after the stop."""
    meta = av.meta
    p = injection.plan(meta.injection, ids, vv, meta.d_model)
    # a sharded policy is gathered whole first: ranks stop generating after different numbers of tokens
    with gathered(av.model), injection.injected(av.model, meta.injection, p):
        seqs = av.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=0,
            max_new_tokens=cfg.max_new_tokens,
            use_cache=True,
            pad_token_id=av.tokenizer.pad_token_id,
            eos_token_id=list(av.stop_ids),
        )
    return seqs[:, ids.shape[1] :]


def sample_on_engine(av: ActivationVerbalizer, vectors: Tensor, engine: str, cfg: GRPORecipe) -> Tensor:
    """New tokens ``[m·k, T]`` (`group_size` k per vector) sampled by `engine` with the policy's adapter.

    The adapter is written from memory under the sha256 of its weights, so the engine generates with
    this step's policy (vLLM loads it as a new LoRA; nothing restarts). The seed comes from torch's
    generator, so a seeded run asks for the same samples."""
    if is_sharded(av.model):
        raise HubkitError(
            f"grpo.rollout_engine {engine}: a policy sharded by distributed.strategy fsdp samples in process; "
            "set `rollout_engine: transformers`"
        )
    sampling = Sampling(cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    rows = av.generate_on_engine(vectors.cpu(), engine, cfg.group_size, seed, sampling)
    return pad_rows(rows, cfg.max_new_tokens, av.stop_ids[0], av.tokenizer.pad_token_id)


def pad_rows(rows: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int) -> Tensor:
    """Engine rows (new tokens, the stop token left out) as ``generate`` returns them: a row shorter than
    `max_new_tokens` stopped, so `eos_id` follows it; then `pad_id` to the longest row."""
    done = [r + [eos_id] if len(r) < max_new_tokens else r[:max_new_tokens] for r in rows]
    width = max(len(r) for r in done)
    return torch.tensor([r + [pad_id] * (width - len(r)) for r in done], dtype=torch.long)


def rollout_engine(spec: str, scheme: str, adapter_name: str | None) -> str:
    """The engine GRPO samples on: `spec` resolved for the AV's injection scheme (`hubkit.engines`).

    An engine is given the policy as a LoRA adapter each step; a full-weights policy samples in process
    (``auto`` falls back with one log line, an explicit engine is an error)."""
    name = engines.resolve(spec, scheme)
    if name != "transformers" and adapter_name is None:
        if spec == "auto":
            log.info("grpo.rollout_engine auto → transformers: a full-weights policy samples in process")
            return "transformers"
        raise HubkitError(
            f"grpo.rollout_engine {spec}: an engine samples with the policy's LoRA adapter, synced each step; "
            "this policy trains all weights, so set `rollout_engine: transformers`"
        )
    if name != "transformers":
        log.info("grpo rollouts on engine %s (the policy's adapter synced every step)", name)
    return name
