"""GRPO's objective, as pure functions tested on their own: which rollouts count, their rewards, the
group-standardised advantages, the clipped PPO loss with its KL term, the mask of sampled tokens, the
sampled tokens' log-probs under a policy, and the frozen SFT AR's reading of a step."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hubkit import injection
from hubkit.meta import NLAMeta
from hubkit.metrics import normalised_mse
from hubkit.verbalizer import Explanation


def template_of(text: str) -> str:
    """An output's template: lower-cased, digits folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text.lower())).strip()


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """Rewards standardised within each consecutive group of `group_size` (zero where a group is flat)."""
    r = rewards.view(-1, group_size).float()
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, unbiased=False, keepdim=True)
    return ((r - mean) / (std + eps)).flatten()


def succeeded(details: list[Explanation], max_new_tokens: int) -> list[bool]:
    """Which rollouts count: parsed, and stopped before the length cap (a truncated one is a failure)."""
    return [d.ok and d.n_tokens < max_new_tokens for d in details]


def rewards_for(
    details: list[Explanation],
    reconstructions: Tensor | None,
    targets: Tensor,
    parse_penalty: float,
    ok: list[bool] | None = None,
    length_penalty: float = 0.0,
    hinge: int | None = None,
) -> Tensor:
    """−normalised MSE − `length_penalty` × tokens beyond `hinge` for the rollouts that succeeded
    (`ok`, default: parsed; `reconstructions` holds their rows, in order), −`parse_penalty` for the rest."""
    ok = [d.ok for d in details] if ok is None else ok
    out = torch.full((len(details),), -float(parse_penalty))
    idx = [i for i, good in enumerate(ok) if good]
    if idx:
        assert reconstructions is not None and len(reconstructions) == len(idx)
        r = -normalised_mse(reconstructions.float().cpu(), targets[idx].float().cpu())
        if length_penalty and hinge is not None:
            over = torch.tensor([max(0, details[i].n_tokens - hinge) for i in idx], dtype=r.dtype)
            r = r - length_penalty * over
        out[idx] = r
    return out


def clipped_objective(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    kl_coef: float,
) -> tuple[Tensor, Tensor]:
    """Per-sequence GRPO loss ``[N]`` (token mean of −min(ρA, clip(ρ)A) + β·KL) and the token KL ``[N, T]``."""
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    pg = -torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    delta = ref_logp - logp
    kl = torch.exp(delta) - delta - 1
    per_token = (pg + kl_coef * kl) * mask
    return per_token.sum(dim=1) / mask.sum(dim=1).clamp_min(1), kl


def response_mask(new_tokens: Tensor, details: list[Explanation]) -> Tensor:
    """1 on each sampled token up to and including its EOS (the tokens the policy chose)."""
    n, t = new_tokens.shape
    mask = torch.zeros(n, t)
    for i, d in enumerate(details):
        mask[i, : min(d.n_tokens + 1, t)] = 1
    return mask


def token_logprobs(
    model: nn.Module,
    meta: NLAMeta,
    seqs: Tensor,
    attention: Tensor,
    vectors: Tensor,
    mask: Tensor,
    prompt_len: int,
    temperature: float,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[Tensor, Tensor]:
    """(log-prob of each sampled token, entropy of each next-token distribution), both ``[N, T]``, of
    `model` reading ``seqs`` (prompt of `prompt_len` tokens, then the sample) with `vectors` injected.

    The log-probs keep their graph when called with gradients on; the entropy (a statistic) never does.
    A token's log-prob is its logit minus the log-sum-exp: no ``[N, T, vocab]`` log-softmax is kept."""
    plan = injection.plan(meta.injection, seqs, vectors, meta.d_model)
    t = seqs.shape[1] - prompt_len
    with injection.injected(model, meta.injection, plan), autocast():
        logits = model(input_ids=seqs, attention_mask=attention, use_cache=False, logits_to_keep=t + 1).logits
    z = logits[:, :-1].float() / temperature
    norm = torch.logsumexp(z, dim=-1)
    logp = z.gather(-1, seqs[:, prompt_len:, None]).squeeze(-1) - norm
    with torch.no_grad():
        probs = torch.softmax(z.detach(), dim=-1)
        entropy = norm.detach() - (probs * z.detach()).sum(-1)
    return logp * mask, entropy * mask


def frozen_reading(v_hat: Tensor, empty: Tensor, targets: Tensor) -> tuple[float, float, int]:
    """(Σ cos, Σ empty cos, n): how close the frozen SFT AR's reconstructions `v_hat` and its reading `empty`
    of an empty text ``[1, d]`` come to `targets` ``[n, d]`` (real − empty per step, `hubkit.train.alarms`)."""
    tgt = targets.float()
    real = F.cosine_similarity(v_hat.float().cpu(), tgt, dim=-1).sum()
    against_empty = F.cosine_similarity(empty.expand_as(tgt), tgt, dim=-1).sum()
    return float(real), float(against_empty), len(tgt)
