"""GRPO: the AV is the policy, the AR scores its explanations.

Per step, every vector gets a group of ``group_size`` sampled explanations. Reward = −normalised
MSE of the AR's reconstruction (``2(1 − cos)``), or ``−parse_penalty`` when the output has no
parsable ``<explanation>…</explanation>``. Advantages are the rewards standardised within each
group. The loss is the clipped PPO objective on token log-probs (recomputed with the vector
injected, at the sampling temperature) plus ``kl_coef`` × the per-token KL (k3 estimator) to the
reference: the base with the adapter disabled (``reference: base``) or the starting AV adapter,
frozen (``reference: init``). Each step logs reward, KL, entropy, length and the number of distinct
outputs per group; when every output of a step is the same template for ``collapse_patience``
steps in a row the run stops with `PolicyCollapsed`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hubkit import heads, injection, loading
from hubkit.checkpoint import verify_checkpoint
from hubkit.errors import CheckpointError, HubkitError
from hubkit.meta import NLAMeta, check_compatible
from hubkit.pair import normalised_mse
from hubkit.reconstructor import ActivationReconstructor
from hubkit.train import data as D
from hubkit.train import metas
from hubkit.train import rollouts as R
from hubkit.train import trajectory as T
from hubkit.train.adapters import (
    grad_norm_clip,
    load_model,
    make_optimizer,
    make_scheduler,
    trainable,
)
from hubkit.train.loop import Runner, RunOptions, check_finite_step, check_finite_weights
from hubkit.train.recipe import GRPORecipe, OptimRecipe, Recipe
from hubkit.verbalizer import ActivationVerbalizer, Explanation

log = logging.getLogger(__name__)

POLICY = "av"
REFERENCE = "ref"


class PolicyCollapsed(HubkitError, RuntimeError):
    """GRPO outputs collapsed to one template: further steps would only reinforce it."""


# -- pure pieces (tested on their own) -------------------------------------------------------------
def template_of(text: str) -> str:
    """An output's template: lower-cased, digits folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text.lower())).strip()


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """Rewards standardised within each consecutive group of `group_size` (zero where a group is flat)."""
    r = rewards.view(-1, group_size).float()
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, unbiased=False, keepdim=True)
    return ((r - mean) / (std + eps)).flatten()


def rewards_for(
    details: list[Explanation], reconstructions: Tensor | None, targets: Tensor, parse_penalty: float
) -> Tensor:
    """−normalised MSE for parsed outputs (`reconstructions` rows, in order), −penalty for the rest."""
    out = torch.full((len(details),), -float(parse_penalty))
    ok = [i for i, d in enumerate(details) if d.ok]
    if ok:
        assert reconstructions is not None and len(reconstructions) == len(ok)
        out[ok] = -normalised_mse(reconstructions.float().cpu(), targets[ok].float().cpu())
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


# -- model setup ----------------------------------------------------------------------------------
def _quiet_dropout(model: nn.Module) -> None:
    """Zero every dropout: sampling and the loss must see the same policy (ratio 1 on the first pass)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def _init_dir(given: str | None, recipe: Recipe, stage: str) -> Path:
    """The AV or AR checkpoint GRPO starts from, its files checked against the hashes recorded with it."""
    if given is not None:
        path = Path(given)
        if not path.is_dir():
            raise CheckpointError(f"grpo.{stage}_init: {path} is not a checkpoint folder")
        verify_checkpoint(path)
        return path
    last = T.latest_step(Path(recipe.output_dir) / stage)
    if last is None:
        raise CheckpointError(
            f"no {stage.upper()} checkpoint to start GRPO from: set `grpo.{stage}_init` or run `hubkit train {stage}` "
            f"first (looked in {Path(recipe.output_dir) / stage})"
        )
    verify_checkpoint(last)
    return last


def load_policy(recipe: Recipe, cfg: GRPORecipe, av_dir: Path, device: torch.device, dtype_name: str):
    """(policy model, reference model or ``None``, tokenizer, AV meta) started from the AV at `av_dir`.

    A LoRA AV keeps training its adapter (`av`); the reference is the same base with the adapter
    disabled, or a frozen copy of the starting adapter (`ref`): no second model in memory. A fully
    fine-tuned AV trains all weights; its reference is a second, frozen model (the base or the start).
    """
    from peft import PeftModel, prepare_model_for_kbit_training

    meta = NLAMeta.load(av_dir)
    if meta.role != "av":
        raise CheckpointError(
            f"{av_dir}: grpo.av_init must be an AV checkpoint, this is an {meta.role.upper()}"
        )
    dtype = getattr(torch, dtype_name)
    base = loading.resolve_base(recipe.base_model)
    reference = None
    if loading.is_adapter(av_dir):
        quant = meta.adapter.quant
        model = load_model(base, dtype, device, quant)
        if quant != "none":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=cfg.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = PeftModel.from_pretrained(model, str(av_dir), adapter_name=POLICY, is_trainable=True)
        if cfg.reference == "init":
            model.load_adapter(str(av_dir), adapter_name=REFERENCE)
        model.set_adapter(POLICY)
    else:
        model = load_model(str(av_dir), dtype, device).requires_grad_(True)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        reference = load_model(str(av_dir) if cfg.reference == "init" else base, dtype, device)
        reference.requires_grad_(False).eval()
    tok = loading.load_tokenizer(av_dir, base)
    _quiet_dropout(model)
    return model, reference, tok, meta


def load_ar(
    recipe: Recipe, ar_dir: Path, device: torch.device, train: bool, dtype_name: str
) -> ActivationReconstructor:
    """The AR giving rewards: frozen, or with its adapter (or weights) and head trainable."""
    if not train:
        return ActivationReconstructor.from_pretrained(
            ar_dir, base_model=recipe.base_model, device=str(device), dtype=dtype_name
        )
    from peft import PeftModel

    from hubkit import arch

    meta = NLAMeta.load(ar_dir)
    if meta.ar is None or meta.role != "ar":
        raise CheckpointError(f"{ar_dir}: grpo.ar_init must be an AR checkpoint")
    head, lora_state = heads.load_head(ar_dir, meta.ar.head_format, meta.d_model, meta.ar.head_bias)
    if lora_state:
        raise CheckpointError(
            f"{ar_dir}: an AR with LoRA tensors inside its head file cannot be trained here; "
            "set grpo.train_ar: false"
        )
    dtype = getattr(torch, dtype_name)
    base = loading.resolve_base(recipe.base_model)
    if loading.is_adapter(ar_dir):
        model = load_model(base, dtype, device, meta.adapter.quant)
        model = PeftModel.from_pretrained(model, str(ar_dir), adapter_name="ar", is_trainable=True)
    else:
        model = load_model(str(ar_dir), dtype, device).requires_grad_(True)
    arch.truncate(model, meta.ar.num_layers)
    _quiet_dropout(model)
    head = head.to(device).requires_grad_(True)
    return ActivationReconstructor(model, loading.load_tokenizer(ar_dir, base), meta, head)


# -- the trainer ----------------------------------------------------------------------------------
@dataclass
class Rollout:
    vectors: Tensor  # [m, d] one per group
    seqs: Tensor  # [m·k, P + T] prompt + sampled tokens
    attention: Tensor  # [m·k, P + T]
    mask: Tensor  # [m·k, T] sampled tokens the loss counts
    details: list[Explanation]
    rewards: Tensor  # [m·k]
    advantages: Tensor  # [m·k]
    old_logp: Tensor  # [m·k, T]
    ref_logp: Tensor  # [m·k, T]
    entropy: Tensor  # [m·k, T]


class GRPOTrainer:
    def __init__(self, recipe: Recipe, runner: Runner, data: str | Path) -> None:
        cfg: GRPORecipe = recipe.stage("grpo")  # type: ignore[assignment]
        self.recipe, self.cfg, self.runner, self.device = recipe, cfg, runner, runner.device
        self.av_dir = _init_dir(cfg.av_init, recipe, "av")
        self.ar_dir = _init_dir(cfg.ar_init, recipe, "ar")
        self.model, self.reference, tok, meta = load_policy(
            recipe, cfg, self.av_dir, self.device, runner.dtype
        )
        self.adapter_name = POLICY if self.reference is None else None
        meta = metas.check_injection_scale(
            meta,
            self.model,
            runner.opts.allow_ood_injection or bool(meta.injection and meta.injection.ood_allowed),
            tokenizer=tok,
        )
        self.av = ActivationVerbalizer(self.model, tok, meta, adapter_name=self.adapter_name)
        self.meta, self.tokenizer = self.av.meta, tok
        self.ar = load_ar(recipe, self.ar_dir, self.device, cfg.train_ar, runner.dtype)
        check_compatible(self.meta, self.ar.meta)
        self.table = D.read_rl(data, self.meta.d_model)
        self.prompt_len = len(self.av.prompt_ids)
        self.rollout_engine = R.rollout_engine(
            cfg.rollout_engine, self.meta.injection.scheme, self.adapter_name
        )
        for model in (self.model, self.reference):  # FSDP shards in place; the AR stays whole
            runner.shard(model)

    # -- log-probs ------------------------------------------------------------------------------
    def token_logprobs(
        self, seqs: Tensor, attention: Tensor, vectors: Tensor, mask: Tensor, model: nn.Module | None = None
    ) -> tuple[Tensor, Tensor]:
        """(log-prob of each sampled token, entropy of each next-token distribution), both ``[N, T]``."""
        model = model if model is not None else self.model
        p = injection.plan(self.meta.injection, seqs, vectors, self.meta.d_model)
        t = seqs.shape[1] - self.prompt_len
        with injection.injected(model, self.meta.injection, p), self.runner.acc.autocast():
            logits = model(
                input_ids=seqs, attention_mask=attention, use_cache=False, logits_to_keep=t + 1
            ).logits
        logp_all = F.log_softmax(logits[:, :-1].float() / self.cfg.temperature, dim=-1)
        logp = logp_all.gather(-1, seqs[:, self.prompt_len :, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp * mask, entropy * mask

    def reference_logprobs(self, seqs: Tensor, attention: Tensor, vectors: Tensor, mask: Tensor) -> Tensor:
        """Token log-probs under the reference policy (see `load_policy`)."""
        if self.reference is not None:
            return self.token_logprobs(seqs, attention, vectors, mask, model=self.reference)[0]
        switch = (
            loading.active_adapter(self.model, REFERENCE)
            if self.cfg.reference == "init"
            else self.model.disable_adapter()
        )
        with switch:
            return self.token_logprobs(seqs, attention, vectors, mask)[0]

    # -- one group batch ------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, vectors: Tensor) -> Rollout:
        cfg, k = self.cfg, self.cfg.group_size
        vv = vectors.repeat_interleave(k, dim=0).to(self.device)
        ids = torch.tensor([self.av.prompt_ids] * len(vv), device=self.device)
        self.model.eval()
        if self.rollout_engine == "transformers":
            new = R.sample_in_process(self.av, ids, vv, cfg)
        else:
            new = R.sample_on_engine(self.av, vectors, self.rollout_engine, cfg)
        seqs = torch.cat([ids, new.to(self.device)], dim=1)
        details = self.av.decode(new)
        mask = response_mask(new, details).to(self.device)
        attention = torch.cat([torch.ones_like(ids), mask.long()], dim=1)
        ok_texts = [d.text for d in details if d.ok]
        recon = self.ar.reconstruct(ok_texts) if ok_texts else None
        rewards = rewards_for(details, recon, vv.cpu(), cfg.parse_penalty)
        old, entropy = self.token_logprobs(seqs, attention, vv, mask)
        ref = self.reference_logprobs(seqs, attention, vv, mask)
        return Rollout(
            vectors.to(self.device),
            seqs,
            attention,
            mask,
            details,
            rewards,
            group_advantages(rewards, k).to(self.device),
            old,
            ref,
            entropy,
        )

    def policy_loss(self, r: Rollout) -> Tensor:
        vv = r.vectors.repeat_interleave(self.cfg.group_size, dim=0)
        logp, _ = self.token_logprobs(r.seqs, r.attention, vv, r.mask)
        per_seq, _ = clipped_objective(
            logp, r.old_logp, r.ref_logp, r.advantages, r.mask, self.cfg.clip_eps, self.cfg.kl_coef
        )
        return per_seq.sum()

    def ar_loss(self, r: Rollout) -> tuple[Tensor | None, int]:
        ok = [i for i, d in enumerate(r.details) if d.ok]
        if not ok:
            return None, 0
        targets = r.vectors.repeat_interleave(self.cfg.group_size, dim=0)[ok]
        pred = self.ar.forward([r.details[i].text for i in ok])
        return normalised_mse(pred, targets.to(pred.device)).sum(), len(ok)

    # -- checkpoint parts -----------------------------------------------------------------------
    def parts(self, training: dict[str, Any]) -> list[T.Part]:
        av_meta = metas.with_training(self.meta, **training)
        parts = [T.Part(self.model, self.tokenizer, av_meta, adapter_name=self.adapter_name)]
        if self.cfg.train_ar:
            from peft import PeftModel

            ar_meta = metas.with_training(self.ar.meta, **{**training, "loss_type": "normalised_mse"})
            name = "ar" if isinstance(self.ar.model, PeftModel) else None
            parts.append(
                T.Part(
                    self.ar.model,
                    self.ar.tokenizer,
                    ar_meta,
                    head=self.ar.head,
                    adapter_name=name,
                    subdir="ar",
                )
            )
        return parts

    def restore(self, folder: Path) -> None:
        from peft import PeftModel

        T.restore_weights(self.model, folder, self.adapter_name)
        if self.cfg.train_ar:
            T.restore_weights(
                self.ar.model, folder / "ar", "ar" if isinstance(self.ar.model, PeftModel) else None
            )
            T.restore_head(self.ar.head, folder / "ar")

    def train(self) -> Path:
        """Run (or resume) the stage; returns the last checkpoint folder (see `run_grpo`)."""
        return run_grpo(self)

    def _ar_step(self, rollouts: list[Rollout], params: list[nn.Parameter], opt, sched) -> float:
        self.ar.model.train()
        total, count = 0.0, 0
        losses = []
        for ro in rollouts:
            loss, n = self.ar_loss(ro)
            if loss is not None:
                losses.append(loss)
                count += n
        global_count = self.runner.reduce_sum(float(count))
        if global_count == 0:
            sched.step()
            return float("nan")
        for loss in losses:
            (loss / global_count).backward()
            total += float(loss.detach())
        self.runner.sync_grads(params)
        grad_norm_clip(params, self.cfg.optim.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        self.ar.model.eval()
        return self.runner.reduce_sum(total) / global_count


# -- the loop ----------------------------------------------------------------------------------------
@dataclass
class Optimisers:
    """The policy's optimiser and schedule, plus the AR's when it trains alongside."""

    policy_params: list[nn.Parameter]
    ar_params: list[nn.Parameter]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]


def make_optimisers(t: GRPOTrainer) -> Optimisers:
    cfg = t.cfg
    policy_params = trainable(t.model)
    optimizer = make_optimizer([{"params": policy_params}], cfg.optim)
    optimizers = {"main": optimizer}
    schedulers = {"main": make_scheduler(optimizer, cfg.optim, cfg.steps)}
    ar_params: list[nn.Parameter] = []
    if cfg.train_ar:
        ar_params = [p for p in t.ar.model.parameters() if p.requires_grad] + list(t.ar.head.parameters())
        ar_opt = make_optimizer([{"params": ar_params}], replace(cfg.optim, lr=cfg.ar_lr))
        optimizers["ar"] = ar_opt
        schedulers["ar"] = make_scheduler(ar_opt, OptimRecipe(lr=cfg.ar_lr), cfg.steps)
    return Optimisers(policy_params, ar_params, optimizers, schedulers)


@dataclass
class Progress:
    """Counters carried from step to step (and restored on resume)."""

    start: int
    tokens_seen: int
    parent: str
    streak: int
    last: Path | None


def resume_progress(t: GRPOTrainer, opt: Optimisers, per_step: int) -> Progress:
    """Where the run starts: step 0 from the AV init, or the resumed checkpoint with everything restored."""
    runner = t.runner
    if runner.resumed is None:
        return Progress(0, 0, str(t.av_dir), 0, None)
    r = runner.resumed
    T.check_resumable(r, "grpo", runner.config_sha256, t.table.sha256, per_step)
    t.restore(r.folder)
    for name, o in opt.optimizers.items():
        o.load_state_dict(r.optimizers[name])
        opt.schedulers[name].load_state_dict(r.schedulers[name])
    streak = int(r.state.extra.get("collapse_streak", 0))
    return Progress(r.state.step, r.state.tokens_seen, r.folder.name, streak, r.folder)


def _check_collapse(t: GRPOTrainer, p: Progress, step: int, stats: dict, rollouts: list[Rollout]) -> None:
    p.streak = p.streak + 1 if stats["templates"] == 1 else 0
    if p.streak >= t.cfg.collapse_patience:
        example = rollouts[0].details[0].raw
        raise PolicyCollapsed(
            f"GRPO stopped at step {step}: for {p.streak} step(s) in a row all {stats['outputs']} sampled "
            f"outputs were one template ({example[:120]!r}); the policy has collapsed and more steps would "
            f"reinforce it. Last good checkpoint: {p.last or t.av_dir}. Lower optim.lr, raise "
            "grpo.kl_coef or grpo.temperature, or check the AR's rewards"
        )


def _policy_update(
    t: GRPOTrainer, opt: Optimisers, p: Progress, step: int, rollouts, stats, n_seqs: int
) -> None:
    """`inner_epochs` passes of the clipped objective over the step's rollouts (refused when non-finite)."""
    cfg, runner, optimizer = t.cfg, t.runner, opt.optimizers["main"]
    t.model.train()
    for _ in range(cfg.inner_epochs):
        for ro in rollouts:
            with runner.acc.autocast():
                loss = t.policy_loss(ro) / n_seqs
            loss.backward()
        runner.sync_grads(opt.policy_params)
        stats["grad_norm"] = grad_norm_clip(opt.policy_params, cfg.optim.max_grad_norm)
        check_finite_step("grpo", step, p.last, reward=stats["reward"], grad_norm=stats["grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    opt.schedulers["main"].step()


def run_grpo(t: GRPOTrainer) -> Path:
    """The GRPO loop: sample, score, update (policy, then the AR when it trains), log, checkpoint."""
    cfg, recipe, runner = t.cfg, t.recipe, t.runner
    opt = make_optimisers(t)
    per_step = cfg.micro_batch_size * cfg.grad_accum * runner.world
    p = resume_progress(t, opt, per_step)
    runner.start_metrics(p.start)
    n_seqs = per_step * cfg.group_size
    for step in range(p.start + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        rows = D.step_rows(len(t.table), recipe.seed, step - 1, per_step)
        rollouts = []
        for index, mb in runner.my_micro_batches(rows, cfg.micro_batch_size):
            runner.seed_micro(step, index)
            rollouts.append(t.rollout(t.table.vectors[mb]))
        stats = step_stats(rollouts, runner, cfg.group_size)
        _check_collapse(t, p, step, stats, rollouts)
        lr = opt.schedulers["main"].get_last_lr()[0]
        _policy_update(t, opt, p, step, rollouts, stats, n_seqs)
        if cfg.train_ar:
            stats["ar_loss"] = t._ar_step(rollouts, opt.ar_params, opt.optimizers["ar"], opt.schedulers["ar"])
        p.tokens_seen += int(runner.reduce_sum(float(sum(ro.attention.sum().item() for ro in rollouts))))
        metrics = {
            "step": step,
            "loss": -stats["reward"],
            "lr": lr,
            "tokens_seen": p.tokens_seen,
            **stats,
            "seconds": time.perf_counter() - t0,
        }
        runner.log_step(metrics)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            check_finite_weights("grpo", step, p.last, [*opt.policy_params, *opt.ar_params])
            p.last = runner.save_step(
                stage_name="grpo",
                loss_type="grpo_clipped_kl",
                step=step,
                loss=-stats["reward"],
                lr=lr,
                tokens_seen=p.tokens_seen,
                data_sha256=t.table.sha256,
                parent=p.parent,
                global_batch=per_step,
                parts=t.parts,
                optimizers=opt.optimizers,
                schedulers=opt.schedulers,
                extra={"collapse_streak": p.streak},
            )
            p.parent = p.last.name
        runner.maybe_hang(step)
    return p.last if p.last is not None else runner.run_dir


def step_stats(rollouts: list[Rollout], rs: Runner, k: int) -> dict[str, Any]:
    """Step statistics over every process: reward, KL, entropy, length, parse rate, distinct outputs (groups of `k`)."""
    n_tok = sum(float(ro.mask.sum()) for ro in rollouts)
    kl_tok = 0.0
    for ro in rollouts:
        delta = ro.ref_logp - ro.old_logp
        kl_tok += float(((torch.exp(delta) - delta - 1) * ro.mask).sum())
    details = [d for ro in rollouts for d in ro.details]
    distinct = [len({dd.raw for dd in details[i : i + k]}) for i in range(0, len(details), k)]
    templates = {template_of(d.raw) for d in details}
    if rs.world > 1:
        from accelerate.utils import gather_object

        templates = set(gather_object(sorted(templates)))
    n = rs.reduce_sum(float(len(details)))
    tokens = rs.reduce_sum(n_tok)
    return {
        "reward": rs.reduce_sum(float(sum(float(ro.rewards.sum()) for ro in rollouts))) / n,
        "kl": rs.reduce_sum(kl_tok) / max(tokens, 1.0),
        "entropy": rs.reduce_sum(sum(float(ro.entropy.sum()) for ro in rollouts)) / max(tokens, 1.0),
        "length": rs.reduce_sum(float(sum(d.n_tokens for d in details))) / n,
        "parsed": rs.reduce_sum(float(sum(d.ok for d in details))) / n,
        "distinct_per_group": rs.reduce_sum(float(sum(distinct))) / rs.reduce_sum(float(len(distinct))),
        "templates": len(templates),
        "outputs": int(n),
    }


def train_grpo(recipe: Recipe, opts: RunOptions | None = None) -> Path:
    """Run (or resume) the recipe's GRPO stage; returns the last checkpoint folder."""
    opts = opts or RunOptions()
    runner = Runner(recipe, "grpo", opts)
    return GRPOTrainer(recipe, runner, runner.data_path("RL")).train()


__all__ = [
    "GRPOTrainer",
    "PolicyCollapsed",
    "clipped_objective",
    "group_advantages",
    "rewards_for",
    "template_of",
    "train_grpo",
]
