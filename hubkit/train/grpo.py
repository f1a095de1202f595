"""GRPO: the AV is the policy, the AR scores its explanations (rewards and loss: `grpo_objective`).

Per step, every vector gets a group of ``group_size`` sampled explanations; advantages are the rewards
standardised within each group, and the loss is the clipped PPO objective on token log-probs plus
``kl_coef`` × the per-token KL to the reference (the starting AV frozen, or the base). With ``train_ar``
the AR takes one MSE step on the parsed rollouts after each policy step, and a frozen copy of the SFT AR
reads the same rollouts as a fixed yardstick for the alarms (`hubkit.train.alarms`). A policy whose
outputs are one template for ``collapse_patience`` steps stops with `PolicyCollapsed`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from torch import Tensor, nn

from hubkit import loading
from hubkit.errors import HubkitError
from hubkit.metrics import normalised_mse
from hubkit.train import metas, trajectory
from hubkit.train.adapters import grad_norm_clip, make_optimizer, make_scheduler, trainable
from hubkit.train.alarms import AlarmWatch
from hubkit.train.data import read_rl, step_rows
from hubkit.train.grpo_models import POLICY, REFERENCE, frozen_ar, init_dir, load_ar, load_policy, preflight
from hubkit.train.grpo_objective import (
    clipped_objective,
    frozen_reading,
    group_advantages,
    response_mask,
    rewards_for,
    succeeded,
    template_of,
    token_logprobs,
)
from hubkit.train.loop import Runner, RunOptions, check_finite_step, seed_micro
from hubkit.train.recipe import GRPORecipe, OptimRecipe, Recipe
from hubkit.train.rollouts import rollout_engine, sample_in_process, sample_on_engine
from hubkit.verbalizer import ActivationVerbalizer, Explanation


class PolicyCollapsed(HubkitError, RuntimeError):
    """GRPO outputs collapsed to one template: further steps would only reinforce it."""


@dataclass
class Rollout:
    vectors: Tensor  # [m, d] one per group
    seqs: Tensor  # [m·k, P + T] prompt + sampled tokens
    attention: Tensor  # [m·k, P + T]
    mask: Tensor  # [m·k, T] sampled tokens the loss counts
    details: list[Explanation]
    rewards: Tensor  # [m·k]
    advantages: Tensor  # [m·k]
    old_logp: Tensor | None  # [m·k, T]; None until the policy pass fills it (one inner epoch: same weights)
    ref_logp: Tensor | None  # [m·k, T]; None with kl_coef 0 (no reference)
    entropy: Tensor | None  # [m·k, T]; filled with old_logp
    ok: list[bool]  # parsed and stopped before the cap: scored by the AR, and what the AR trains on
    frozen: tuple[float, float, int]  # the frozen SFT AR on the ok rollouts: Σ cos, Σ empty cos, n


class GRPOTrainer:
    """GRPO's models, optimisers and per-step passes (`run_grpo` is the loop over them)."""

    stage_name, loss_type = "grpo", "grpo_clipped_kl"

    def __init__(self, recipe: Recipe, runner: Runner, data: str | Path) -> None:
        cfg: GRPORecipe = recipe.stage("grpo")  # type: ignore[assignment]
        self.recipe, self.cfg, self.runner, self.device = recipe, cfg, runner, runner.device
        self.av_dir = init_dir(cfg.av_init, recipe, "av")
        self.init_parent = str(self.av_dir)
        self.ar_dir = init_dir(cfg.ar_init, recipe, "ar")
        preflight(recipe, cfg, self.av_dir, self.ar_dir, runner.dtype, str(self.device))
        self.model, self.reference, tok, meta = load_policy(
            recipe, cfg, self.av_dir, self.device, runner.dtype
        )
        self.adapter_name = POLICY if loading.is_adapter(self.av_dir) else None
        meta = metas.check_injection_scale(
            meta,
            self.model,
            runner.opts.allow_ood_injection or bool(meta.injection and meta.injection.ood_allowed),
            tokenizer=tok,
        )
        self.av = ActivationVerbalizer(self.model, tok, meta, adapter_name=self.adapter_name)
        self.meta, self.tokenizer = self.av.meta, tok
        self.ar = load_ar(recipe, self.ar_dir, self.device, cfg.train_ar, runner.dtype)
        self.ar_adapter = "ar" if isinstance(self.ar.model, PeftModel) else None
        # the fixed yardstick: the SFT AR itself when it stays frozen, else a frozen copy beside it
        self.frozen_ar = (
            frozen_ar(self.ar, self.ar_dir, recipe, self.device, runner.dtype) if cfg.train_ar else self.ar
        )
        with torch.no_grad():
            self.frozen_empty = self.frozen_ar.reconstruct([""]).float().cpu()
        self.table = read_rl(data, self.meta.d_model)
        self.prompt_len = len(self.av.prompt_ids)
        self.timings: dict[str, float] = {}  # seconds of the current step by phase (`clock`)
        self.rollout_engine = rollout_engine(
            cfg.rollout_engine, self.meta.injection.scheme, self.adapter_name
        )
        for model in (self.model, self.reference):  # FSDP shards in place; the AR stays whole
            runner.shard(model)
        # the policy's optimiser and schedule (over the sharded parameters), and the AR's when it trains
        self.policy_params = trainable(self.model)
        policy_opt = make_optimizer([{"params": self.policy_params}], cfg.optim)
        self.optimizers = {"main": policy_opt}
        self.schedulers = {"main": make_scheduler(policy_opt, cfg.optim, cfg.steps)}
        self.ar_params: list[nn.Parameter] = []
        if cfg.train_ar:
            self.ar_params = [*trainable(self.ar.model), *self.ar.head.parameters()]
            ar_opt = make_optimizer([{"params": self.ar_params}], replace(cfg.optim, lr=cfg.critic_lr))
            self.optimizers["ar"] = ar_opt
            self.schedulers["ar"] = make_scheduler(ar_opt, OptimRecipe(lr=cfg.critic_lr), cfg.steps)
        self.params = [*self.policy_params, *self.ar_params]

    def token_logprobs(
        self, seqs: Tensor, attention: Tensor, vectors: Tensor, mask: Tensor, model: nn.Module | None = None
    ) -> tuple[Tensor, Tensor]:
        """`token_logprobs` of `model` (default: the policy) at the sampling temperature."""
        model = model if model is not None else self.model
        args = (self.prompt_len, self.cfg.temperature, self.runner.acc.autocast)
        return token_logprobs(model, self.meta, seqs, attention, vectors, mask, *args)

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

    @torch.no_grad()
    def rollout(self, vectors: Tensor) -> Rollout:
        cfg, k = self.cfg, self.cfg.group_size
        t0 = time.perf_counter()
        vv = vectors.repeat_interleave(k, dim=0).to(self.device)
        ids = torch.tensor([self.av.prompt_ids] * len(vv), device=self.device)
        self.model.eval()
        if self.rollout_engine == "transformers":
            new = sample_in_process(self.av, ids, vv, cfg)
        else:
            new = sample_on_engine(self.av, vectors, self.rollout_engine, cfg)
        seqs = torch.cat([ids, new.to(self.device)], dim=1)
        details = self.av.decode(new)
        mask = response_mask(new, details).to(self.device)
        attention = torch.cat([torch.ones_like(ids), mask.long()], dim=1)
        t0 = self.clock("sample", t0)
        ok = succeeded(details, cfg.max_new_tokens)
        good = [i for i, g in enumerate(ok) if g]
        ok_texts = [details[i].text for i in good]
        recon = self.ar.reconstruct(ok_texts) if ok_texts else None
        rewards = rewards_for(details, recon, vv.cpu(), cfg.parse_penalty, ok, cfg.length_penalty, cfg.hinge)
        reading = (0.0, 0.0, 0)
        if ok_texts:  # the frozen SFT AR's reading: the co-trained AR's reconstruction when it is that AR
            v_hat = recon if self.frozen_ar is self.ar else self.frozen_ar.reconstruct(ok_texts)
            reading = frozen_reading(v_hat, self.frozen_empty, vv.cpu()[good])
        t0 = self.clock("score", t0)
        old = entropy = None
        if cfg.inner_epochs > 1:  # with one pass the policy pass sees the sampling weights: no extra forward
            old, entropy = self.token_logprobs(seqs, attention, vv, mask)
        # β = 0: no reference is loaded and the KL term is zero
        ref = self.reference_logprobs(seqs, attention, vv, mask) if cfg.kl_coef > 0 else None
        self.clock("logprobs", t0)
        advantages = group_advantages(rewards, k).to(self.device)
        vectors = vectors.to(self.device)
        return Rollout(
            vectors, seqs, attention, mask, details, rewards, advantages, old, ref, entropy, ok, reading
        )

    def policy_loss(self, r: Rollout) -> Tensor:
        vv = r.vectors.repeat_interleave(self.cfg.group_size, dim=0)
        logp, entropy = self.token_logprobs(r.seqs, r.attention, vv, r.mask)
        if r.old_logp is None:  # the first pass runs on the weights that sampled: ratio 1
            r.old_logp, r.entropy = logp.detach(), entropy
        ref = r.ref_logp if r.ref_logp is not None else r.old_logp
        per_seq, _ = clipped_objective(
            logp, r.old_logp, ref, r.advantages, r.mask, self.cfg.clip_eps, self.cfg.kl_coef
        )
        return per_seq.sum()

    def clock(self, phase: str, since: float) -> float:
        """Add the seconds since `since` to this step's `phase`; returns now."""
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def parts(self, training: dict[str, Any]) -> list[trajectory.Part]:
        av_meta = metas.with_training(self.meta, **training)
        parts = [trajectory.Part(self.model, self.tokenizer, av_meta, adapter_name=self.adapter_name)]
        if self.cfg.train_ar:
            ar_meta = metas.with_training(self.ar.meta, **{**training, "loss_type": "normalised_mse"})
            ar = self.ar
            parts.append(
                trajectory.Part(ar.model, ar.tokenizer, ar_meta, ar.head, self.ar_adapter, subdir="ar")
            )
        return parts

    def policy_update(self, step: int, rollouts: list[Rollout], reward: float, last: Path | None) -> float:
        """`inner_epochs` passes of the clipped objective over the step's rollouts, each refused when
        non-finite; the gradient norm of the last pass."""
        cfg, runner, optimizer = self.cfg, self.runner, self.optimizers["main"]
        n_seqs = runner.per_step * cfg.group_size
        self.model.train()
        for _ in range(cfg.inner_epochs):
            for ro in rollouts:
                with runner.acc.autocast():
                    loss = self.policy_loss(ro) / n_seqs
                loss.backward()
            runner.sync_grads(self.policy_params)
            grad_norm = grad_norm_clip(self.policy_params, cfg.optim.max_grad_norm)
            check_finite_step("grpo", step, last, reward=reward, grad_norm=grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.schedulers["main"].step()
        return grad_norm

    def ar_step(self, rollouts: list[Rollout]) -> float | None:
        """One MSE step of the AR trained alongside, on the step's succeeded rollouts; its mean loss."""
        optimizer, sched = self.optimizers["ar"], self.schedulers["ar"]
        self.ar.model.train()
        losses, count = [], 0
        for r in rollouts:  # the AR reads the succeeded rollouts back towards their vectors
            ok = [i for i, good in enumerate(r.ok) if good]
            if ok:
                pred = self.ar.forward([r.details[i].text for i in ok])
                targets = r.vectors.repeat_interleave(self.cfg.group_size, dim=0)[ok].to(pred.device)
                losses.append(normalised_mse(pred, targets).sum())
                count += len(ok)
        global_count = self.runner.reduce_sum(float(count))
        if global_count == 0:  # nothing to learn from: the schedule still advances with the steps
            sched.step()
            return None
        total = 0.0
        for loss in losses:
            (loss / global_count).backward()
            total += float(loss.detach())
        self.runner.sync_grads(self.ar_params)
        grad_norm_clip(self.ar_params, self.cfg.optim.max_grad_norm)
        optimizer.step()
        sched.step()
        optimizer.zero_grad(set_to_none=True)
        self.ar.model.eval()
        return self.runner.reduce_sum(total) / global_count

    def train(self) -> Path:
        """Run (or resume) the stage (`run_grpo`); returns the last checkpoint folder."""
        return run_grpo(self)


def run_grpo(t: GRPOTrainer) -> Path:
    """The GRPO loop over `t`'s models and optimisers: sample, score, update (policy, then the AR when it
    trains), log, checkpoint; returns the last checkpoint folder. What carries from step to step (progress,
    the collapse streak, the alarms' history) is restored from a resumed step and saved with each one."""
    cfg, runner = t.cfg, t.runner
    p, extra = runner.resume(t)
    streak = int(extra.get("collapse_streak", 0))
    alarms = AlarmWatch(cfg.alarms)
    alarms.restore(extra.get("alarm_history", {}))
    for step in range(p.step + 1, cfg.steps + 1):
        t0 = time.perf_counter()
        t.timings = {}
        rows = step_rows(len(t.table), t.recipe.seed, step - 1, runner.per_step)
        rollouts = []
        for index, mb in runner.my_micro_batches(rows, cfg.micro_batch_size):
            seed_micro(t.recipe.seed, step, index)
            rollouts.append(t.rollout(t.table.vectors[mb]))
        stats = step_stats(rollouts, runner, cfg.group_size)
        streak = streak + 1 if stats["templates"] == 1 else 0
        if streak >= cfg.collapse_patience:
            raise PolicyCollapsed(
                f"GRPO stopped at step {step}: for {streak} step(s) in a row all {stats['outputs']} sampled outputs "
                f"were one template ({rollouts[0].details[0].raw[:120]!r}); the policy has collapsed and more steps "
                f"would reinforce it. Last good checkpoint: {p.last or t.av_dir}. Lower optim.lr, raise "
                "grpo.kl_coef or grpo.temperature, or check the AR's rewards"
            )
        lr = t.schedulers["main"].get_last_lr()[0]
        t1 = time.perf_counter()
        stats["grad_norm"] = t.policy_update(step, rollouts, stats["reward"], p.last)
        stats |= policy_stats(rollouts, runner)
        t1 = t.clock("update", t1)
        if cfg.train_ar:
            stats["ar_loss"] = t.ar_step(rollouts)
            t.clock("ar", t1)
        p.step = step
        p.tokens_seen += int(runner.reduce_sum(float(sum(ro.attention.sum().item() for ro in rollouts))))
        metrics = {
            "step": step,
            "loss": -stats["reward"],
            "lr": lr,
            "tokens_seen": p.tokens_seen,
            **stats,
            "seconds": time.perf_counter() - t0,
            **{f"seconds_{k}": v for k, v in t.timings.items()},  # where the step's time went
        }
        runner.log_step(metrics)
        alarms.add(stats)
        # the last good checkpoint: the newest one before the alarm window (else the starting AV)
        before = [f for s, f in trajectory.list_steps(runner.run_dir) if s <= step - cfg.alarms.window]
        alarms.check(step, str(before[-1] if before else t.av_dir))
        if runner.due(step):
            extra = {"collapse_streak": streak, "alarm_history": alarms.state()}
            runner.save_step(p, t, -stats["reward"], lr, extra)
        runner.maybe_hang(step)
    return p.last if p.last is not None else runner.run_dir


def policy_stats(rollouts: list[Rollout], rs: Runner) -> dict[str, float]:
    """KL to the reference and entropy per sampled token, over every process (after the policy pass)."""
    n_tok = sum(float(ro.mask.sum()) for ro in rollouts)
    kl_tok = ent = 0.0
    for ro in rollouts:
        assert ro.old_logp is not None and ro.entropy is not None
        if ro.ref_logp is not None:
            delta = ro.ref_logp - ro.old_logp
            kl_tok += float(((torch.exp(delta) - delta - 1) * ro.mask).sum())
        ent += float(ro.entropy.sum())
    tokens = max(rs.reduce_sum(n_tok), 1.0)
    return {"kl": rs.reduce_sum(kl_tok) / tokens, "entropy": rs.reduce_sum(ent) / tokens}


def step_stats(rollouts: list[Rollout], rs: Runner, k: int) -> dict[str, Any]:
    """Step statistics over every process: reward, length, parse rate, distinct outputs (groups of `k`)."""
    details = [d for ro in rollouts for d in ro.details]
    distinct = [len({dd.raw for dd in details[i : i + k]}) for i in range(0, len(details), k)]
    templates = {template_of(d.raw) for d in details}
    if rs.world > 1:
        from accelerate.utils import gather_object

        templates = set(gather_object(sorted(templates)))
    n = rs.reduce_sum(float(len(details)))
    # the frozen SFT AR on the succeeded rollouts: Σ cos, Σ empty cos, how many (`Rollout.frozen`)
    cos, empty_cos, n_read = (rs.reduce_sum(float(sum(ro.frozen[i] for ro in rollouts))) for i in range(3))
    real, empty = (cos / n_read, empty_cos / n_read) if n_read else (None, None)
    return {
        "reward": rs.reduce_sum(float(sum(float(ro.rewards.sum()) for ro in rollouts))) / n,
        "length": rs.reduce_sum(float(sum(d.n_tokens for d in details))) / n,
        "parsed": rs.reduce_sum(float(sum(d.ok for d in details))) / n,
        "succeeded": rs.reduce_sum(float(sum(sum(ro.ok) for ro in rollouts))) / n,
        "frozen_cos": real,
        "frozen_real_minus_empty": None if real is None else real - empty,
        "distinct_per_group": rs.reduce_sum(float(sum(distinct))) / rs.reduce_sum(float(len(distinct))),
        "templates": len(templates),
        "outputs": int(n),
    }


def train_grpo(recipe: Recipe, opts: RunOptions | None = None) -> Path:
    """Run (or resume) the recipe's GRPO stage; returns the last checkpoint folder."""
    runner = Runner(recipe, "grpo", opts or RunOptions())
    return GRPOTrainer(recipe, runner, runner.data_path("RL")).train()
