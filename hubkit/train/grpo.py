"""GRPO: the AV is the policy, the AR scores its explanations.

Per step, every vector gets a group of ``group_size`` sampled explanations. Reward = −normalised
MSE of the AR's reconstruction (``2(1 − cos)``) minus a hinged length penalty, or ``−parse_penalty``
when the output failed: no parsable ``<explanation>…</explanation>``, or truncated at the length
cap. Advantages are the rewards standardised within each group. The loss is the clipped PPO
objective on token log-probs (recomputed with the vector injected, at the sampling temperature) plus
``kl_coef`` × the per-token KL (k3 estimator) to the reference: the starting AV, frozen
(``reference: init``, as both published recipes run it), or the base with the adapter disabled
(``reference: base``). With ``train_ar`` the AR takes one MSE step on the parsed rollouts after each
policy step (its own optimiser, 5 × the AV's rate by default), and a frozen copy of the SFT AR reads
the same rollouts as a fixed yardstick. Each step logs reward, KL, entropy, length, parse rate, the
distinct outputs per group and the frozen AR's real − empty cosine; `hubkit.train.alarms` stops a run
whose figures drift, and when every output of a step is the same template for ``collapse_patience``
steps in a row the run stops with `PolicyCollapsed`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hubkit import injection, loading
from hubkit.errors import HubkitError
from hubkit.meta import check_compatible
from hubkit.pair import normalised_mse
from hubkit.train import metas, trajectory
from hubkit.train.adapters import (
    grad_norm_clip,
    make_optimizer,
    make_scheduler,
    trainable,
)
from hubkit.train.alarms import AlarmTripped, AlarmWatch
from hubkit.train.data import read_rl, step_rows
from hubkit.train.grpo_models import (
    FROZEN_AR,
    POLICY,
    REFERENCE,
    frozen_ar,
    init_dir,
    load_ar,
    load_policy,
    preflight,
)
from hubkit.train.grpo_objective import (
    clipped_objective,
    group_advantages,
    response_mask,
    rewards_for,
    succeeded,
    template_of,
)
from hubkit.train.loop import Runner, RunOptions, check_finite_step
from hubkit.train.recipe import GRPORecipe, OptimRecipe, Recipe
from hubkit.train.rollouts import rollout_engine, sample_in_process, sample_on_engine
from hubkit.verbalizer import ActivationVerbalizer, Explanation

log = logging.getLogger(__name__)


class PolicyCollapsed(HubkitError, RuntimeError):
    """GRPO outputs collapsed to one template: further steps would only reinforce it."""


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
    old_logp: (
        Tensor | None
    )  # [m·k, T]; None until the policy pass fills it (one inner epoch: the same weights)
    ref_logp: Tensor | None  # [m·k, T]; None with kl_coef 0 (no reference)
    entropy: Tensor | None  # [m·k, T]; filled with old_logp
    ok: list[bool]  # parsed and stopped before the cap: scored by the AR, and what the AR trains on
    frozen: tuple[float, float, int]  # the frozen SFT AR on the ok rollouts: Σ cos, Σ empty cos, n


class GRPOTrainer:
    def __init__(self, recipe: Recipe, runner: Runner, data: str | Path) -> None:
        cfg: GRPORecipe = recipe.stage("grpo")  # type: ignore[assignment]
        self.recipe, self.cfg, self.runner, self.device = recipe, cfg, runner, runner.device
        self.av_dir = init_dir(cfg.av_init, recipe, "av")
        self.ar_dir = init_dir(cfg.ar_init, recipe, "ar")
        preflight(recipe, cfg, self.av_dir, self.ar_dir, runner.dtype)
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
        check_compatible(self.meta, self.ar.meta)
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
            self.ar_params = [p for p in self.ar.model.parameters() if p.requires_grad]
            self.ar_params += list(self.ar.head.parameters())
            ar_opt = make_optimizer([{"params": self.ar_params}], replace(cfg.optim, lr=cfg.critic_lr))
            self.optimizers["ar"] = ar_opt
            self.schedulers["ar"] = make_scheduler(ar_opt, OptimRecipe(lr=cfg.critic_lr), cfg.steps)

    # -- log-probs ------------------------------------------------------------------------------
    def token_logprobs(
        self, seqs: Tensor, attention: Tensor, vectors: Tensor, mask: Tensor, model: nn.Module | None = None
    ) -> tuple[Tensor, Tensor]:
        """(log-prob of each sampled token, entropy of each next-token distribution), both ``[N, T]``.

        The log-probs keep their graph when called with gradients on; the entropy (a statistic) never does.
        A token's log-prob is its logit minus the log-sum-exp: no ``[N, T, vocab]`` log-softmax is kept."""
        model = model if model is not None else self.model
        p = injection.plan(self.meta.injection, seqs, vectors, self.meta.d_model)
        t = seqs.shape[1] - self.prompt_len
        with injection.injected(model, self.meta.injection, p), self.runner.acc.autocast():
            logits = model(
                input_ids=seqs, attention_mask=attention, use_cache=False, logits_to_keep=t + 1
            ).logits
        z = logits[:, :-1].float() / self.cfg.temperature
        norm = torch.logsumexp(z, dim=-1)
        logp = z.gather(-1, seqs[:, self.prompt_len :, None]).squeeze(-1) - norm
        with torch.no_grad():
            probs = torch.softmax(z.detach(), dim=-1)
            entropy = norm.detach() - (probs * z.detach()).sum(-1)
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
        ok_texts = [d.text for d, good in zip(details, ok) if good]
        recon = self.ar.reconstruct(ok_texts) if ok_texts else None
        rewards = rewards_for(details, recon, vv.cpu(), cfg.parse_penalty, ok, cfg.length_penalty, cfg.hinge)
        reading = self.frozen_reading(ok_texts, vv.cpu()[[i for i, good in enumerate(ok) if good]], recon)
        t0 = self.clock("score", t0)
        old = entropy = None
        if cfg.inner_epochs > 1:  # with one pass the policy pass sees the sampling weights: no extra forward
            old, entropy = self.token_logprobs(seqs, attention, vv, mask)
        # β = 0: no reference is loaded and the KL term is zero
        ref = self.reference_logprobs(seqs, attention, vv, mask) if cfg.kl_coef > 0 else None
        self.clock("logprobs", t0)
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
            ok,
            reading,
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

    def ar_loss(self, r: Rollout) -> tuple[Tensor | None, int]:
        ok = [i for i, good in enumerate(r.ok) if good]
        if not ok:
            return None, 0
        targets = r.vectors.repeat_interleave(self.cfg.group_size, dim=0)[ok]
        pred = self.ar.forward([r.details[i].text for i in ok])
        return normalised_mse(pred, targets.to(pred.device)).sum(), len(ok)

    # -- checkpoint parts -----------------------------------------------------------------------
    def parts(self, training: dict[str, Any]) -> list[trajectory.Part]:
        av_meta = metas.with_training(self.meta, **training)
        parts = [trajectory.Part(self.model, self.tokenizer, av_meta, adapter_name=self.adapter_name)]
        if self.cfg.train_ar:
            from peft import PeftModel

            ar_meta = metas.with_training(self.ar.meta, **{**training, "loss_type": "normalised_mse"})
            name = "ar" if isinstance(self.ar.model, PeftModel) else None
            parts.append(
                trajectory.Part(
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

        trajectory.restore_weights(self.model, folder, self.adapter_name)
        if self.cfg.train_ar:
            trajectory.restore_weights(
                self.ar.model, folder / "ar", "ar" if isinstance(self.ar.model, PeftModel) else None
            )
            trajectory.restore_head(self.ar.head, folder / "ar")

    def frozen_reading(
        self, texts: list[str], targets: Tensor, recon: Tensor | None
    ) -> tuple[float, float, int]:
        """(Σ cos, Σ empty cos, n) of the frozen SFT AR on the succeeded rollouts: real − empty per step."""
        if not texts:
            return 0.0, 0.0, 0
        if self.frozen_ar is self.ar and recon is not None:
            v_hat = recon.float().cpu()
        else:
            v_hat = self.frozen_ar.reconstruct(texts).float().cpu()
        tgt = targets.float()
        real = F.cosine_similarity(v_hat, tgt, dim=-1).sum()
        empty = F.cosine_similarity(self.frozen_empty.expand_as(tgt), tgt, dim=-1).sum()
        return float(real), float(empty), len(texts)

    # -- the loop ---------------------------------------------------------------------------------
    def policy_update(self, step: int, rollouts: list[Rollout], reward: float, last: Path | None) -> float:
        """`inner_epochs` passes of the clipped objective over the step's rollouts, each refused when
        non-finite; the gradient norm of the last pass."""
        cfg, runner, optimizer = self.cfg, self.runner, self.optimizers["main"]
        n_seqs = cfg.micro_batch_size * cfg.grad_accum * runner.world * cfg.group_size
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
        for ro in rollouts:
            loss, n = self.ar_loss(ro)
            if loss is not None:
                losses.append(loss)
                count += n
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

    def check_collapse(
        self, step: int, streak: int, rollouts: list[Rollout], stats: dict, last: Path | None
    ) -> None:
        """Stop when every output was one template for `collapse_patience` steps in a row (`streak`)."""
        if streak >= self.cfg.collapse_patience:
            example = rollouts[0].details[0].raw
            raise PolicyCollapsed(
                f"GRPO stopped at step {step}: for {streak} step(s) in a row all {stats['outputs']} sampled "
                f"outputs were one template ({example[:120]!r}); the policy has collapsed and more steps would "
                f"reinforce it. Last good checkpoint: {last or self.av_dir}. Lower optim.lr, raise "
                "grpo.kl_coef or grpo.temperature, or check the AR's rewards"
            )

    def last_good(self, step: int) -> Path:
        """The newest checkpoint written before the alarm window that tripped (else the starting AV)."""
        before = [
            f for s, f in trajectory.list_steps(self.runner.run_dir) if s <= step - self.cfg.alarms.window
        ]
        return before[-1] if before else self.av_dir

    def train(self) -> Path:
        """Run (or resume) the stage: sample, score, update (policy, then the AR when it trains), log,
        checkpoint; returns the last checkpoint folder."""
        cfg, runner = self.cfg, self.runner
        per_step = cfg.micro_batch_size * cfg.grad_accum * runner.world
        p, extra = runner.resume(
            "grpo",
            self.table.sha256,
            per_step,
            str(self.av_dir),
            self.restore,
            self.optimizers,
            self.schedulers,
        )
        streak = int(extra.get("collapse_streak", 0))
        alarms = AlarmWatch(cfg.alarms)
        alarms.restore(extra.get("alarm_history", {}))
        for step in range(p.step + 1, cfg.steps + 1):
            t0 = time.perf_counter()
            self.timings = {}
            rows = step_rows(len(self.table), self.recipe.seed, step - 1, per_step)
            rollouts = []
            for index, mb in runner.my_micro_batches(rows, cfg.micro_batch_size):
                runner.seed_micro(step, index)
                rollouts.append(self.rollout(self.table.vectors[mb]))
            stats = step_stats(rollouts, runner, cfg.group_size)
            streak = streak + 1 if stats["templates"] == 1 else 0
            self.check_collapse(step, streak, rollouts, stats, p.last)
            lr = self.schedulers["main"].get_last_lr()[0]
            t1 = time.perf_counter()
            stats["grad_norm"] = self.policy_update(step, rollouts, stats["reward"], p.last)
            stats |= policy_stats(rollouts, runner)
            t1 = self.clock("update", t1)
            if cfg.train_ar:
                stats["ar_loss"] = self.ar_step(rollouts)
                self.clock("ar", t1)
            p.step = step
            p.tokens_seen += int(runner.reduce_sum(float(sum(ro.attention.sum().item() for ro in rollouts))))
            metrics = {
                "step": step,
                "loss": -stats["reward"],
                "lr": lr,
                "tokens_seen": p.tokens_seen,
                **stats,
                "seconds": time.perf_counter() - t0,
                **{f"seconds_{k}": v for k, v in self.timings.items()},  # where the step's time went
            }
            runner.log_step(metrics)
            alarms.add(stats)
            alarms.check(step, str(self.last_good(step)))
            if runner.due(step):
                runner.save_step(
                    p,
                    stage_name="grpo",
                    loss_type="grpo_clipped_kl",
                    loss=-stats["reward"],
                    lr=lr,
                    data_sha256=self.table.sha256,
                    global_batch=per_step,
                    params=[*self.policy_params, *self.ar_params],
                    parts=self.parts,
                    optimizers=self.optimizers,
                    schedulers=self.schedulers,
                    extra={"collapse_streak": streak, "alarm_history": alarms.state()},
                )
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
    return {
        "reward": rs.reduce_sum(float(sum(float(ro.rewards.sum()) for ro in rollouts))) / n,
        "length": rs.reduce_sum(float(sum(d.n_tokens for d in details))) / n,
        "parsed": rs.reduce_sum(float(sum(d.ok for d in details))) / n,
        "succeeded": rs.reduce_sum(float(sum(sum(ro.ok) for ro in rollouts))) / n,
        **_frozen_stats(rollouts, rs),
        "distinct_per_group": rs.reduce_sum(float(sum(distinct))) / rs.reduce_sum(float(len(distinct))),
        "templates": len(templates),
        "outputs": int(n),
    }


def _frozen_stats(rollouts: list[Rollout], rs: Runner) -> dict[str, float | None]:
    """The frozen SFT AR on the step's succeeded rollouts: mean cosine, and real − empty."""
    n = rs.reduce_sum(float(sum(ro.frozen[2] for ro in rollouts)))
    if n == 0:
        return {"frozen_cos": None, "frozen_real_minus_empty": None}
    real = rs.reduce_sum(sum(ro.frozen[0] for ro in rollouts)) / n
    empty = rs.reduce_sum(sum(ro.frozen[1] for ro in rollouts)) / n
    return {"frozen_cos": real, "frozen_real_minus_empty": real - empty}


def train_grpo(recipe: Recipe, opts: RunOptions | None = None) -> Path:
    """Run (or resume) the recipe's GRPO stage; returns the last checkpoint folder."""
    opts = opts or RunOptions()
    runner = Runner(recipe, "grpo", opts)
    return GRPOTrainer(recipe, runner, runner.data_path("RL")).train()


__all__ = [
    "FROZEN_AR",
    "AlarmTripped",
    "GRPOTrainer",
    "PolicyCollapsed",
    "clipped_objective",
    "group_advantages",
    "rewards_for",
    "template_of",
    "train_grpo",
]
