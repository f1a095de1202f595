from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hubkit.meta import NLAMeta
from hubkit.train import alarms, distributed, grpo, grpo_models, rollouts
from hubkit.train.loop import RunOptions
from hubkit.verbalizer import ActivationVerbalizer, Explanation

from .train_helpers import make_recipe, response_logprobs, write_rl, write_sft

GOOD, BAD = "cat", "dog"


# -- pure pieces --------------------------------------------------------------------------------------
def test_group_advantages_standardise_within_each_group():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    a = grpo.group_advantages(r, 3)
    first = (r[:3] - r[:3].mean()) / (r[:3].std(unbiased=False) + 1e-4)
    torch.testing.assert_close(a[:3], first)
    assert torch.equal(a[3:], torch.zeros(3))  # a flat group teaches nothing


def test_clipped_objective_matches_the_formula():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]])
    old = torch.tensor([[-1.5, -2.0], [-0.2, -0.1]])
    ref = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    per_seq, kl = grpo.clipped_objective(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.1)
    expected = []
    for i in range(2):
        terms = []
        for t in range(2):
            if mask[i, t] == 0:
                continue
            ratio = float(torch.exp(logp[i, t] - old[i, t]))
            a = float(adv[i])
            pg = -min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
            d = float(ref[i, t] - logp[i, t])
            terms.append(pg + 0.1 * (torch.exp(torch.tensor(d)).item() - d - 1))
        expected.append(sum(terms) / len(terms))
    torch.testing.assert_close(per_seq, torch.tensor(expected))
    assert (kl >= 0).all()


def test_rewards_penalise_unparsable_outputs():
    d = [
        Explanation("a", "<explanation>a</explanation>", "ok", 3),
        Explanation("", "junk", "no_tags", 1),
        Explanation("b", "<explanation>b</explanation>", "ok", 3),
    ]
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    recon = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # row 0: same direction; row 2: 45°
    r = grpo.rewards_for(d, recon, targets, parse_penalty=4.0)
    torch.testing.assert_close(r, torch.tensor([0.0, -4.0, -(2 - 2**0.5)]))
    assert grpo.template_of("The  Cat 12") == grpo.template_of("the cat 7") != grpo.template_of("the dog")


def test_truncated_rollouts_fail_and_long_ones_pay_the_hinged_length_penalty():
    d = [
        Explanation("a", "<explanation>a</explanation>", "ok", 3),
        Explanation("b", "<explanation>b</explanation> and on", "ok", 10),  # reached the cap: truncated
        Explanation("c", "<explanation>c</explanation>", "ok", 8),  # 2 tokens past the hinge
        Explanation("", "<explanation>d", "unclosed", 5),
    ]
    ok = grpo.succeeded(d, max_new_tokens=10)
    assert ok == [True, False, True, False]
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    recon = torch.tensor([[3.0, 0.0], [1.0, 1.0]])  # rows 0 and 2 (the succeeded ones), in order
    r = grpo.rewards_for(d, recon, targets, 2.0, ok, length_penalty=0.25, hinge=6)
    torch.testing.assert_close(r, torch.tensor([0.0, -2.0, -(2 - 2**0.5) - 0.5, -2.0]))


def test_grpo_defaults_follow_the_published_recipes(train_base, tmp_path):
    from hubkit.train.recipe import RecipeError

    cfg = make_recipe(train_base, tmp_path, grpo={"optim": {"lr": 2e-5}}).grpo
    assert (cfg.reference, cfg.kl_coef, cfg.train_ar, cfg.group_size) == ("init", 0.01, True, 8)
    assert cfg.critic_lr == pytest.approx(1e-4) and cfg.parse_penalty == 2.0
    assert cfg.hinge == 36  # 3/4 of the 48-token cap
    assert make_recipe(train_base, tmp_path, grpo={"ar_lr": 3e-4}).grpo.critic_lr == 3e-4
    with pytest.raises(RecipeError, match=r"grpo.length_target.*above max_new_tokens \(48\)"):
        make_recipe(train_base, tmp_path, grpo={"length_target": 60})
    with pytest.raises(RecipeError, match=r"group_size"):
        make_recipe(train_base, tmp_path, grpo={"group_size": 1})


# -- on a tiny policy that says "cat" or "dog" ---------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory, train_base):
    """An AR (the base, identity head) and an AV fine-tuned to answer one vector with cat or dog, 50/50."""
    from hubkit import arch, loading
    from hubkit.checkpoint import write_checkpoint
    from hubkit.heads import identity_head
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.train import metas
    from hubkit.train.recipe import AdapterRecipe
    from hubkit.train.sft_av import train_av

    root = tmp_path_factory.mktemp("grpo")
    model = loading.load_causal_lm(str(train_base))
    probe = make_recipe(train_base, root)
    ar_meta = metas.ar_meta(probe, model, AdapterRecipe(kind="full"), head_bias=False)
    arch.truncate(model, ar_meta.ar.num_layers)
    head = identity_head(ar_meta.d_model)
    write_checkpoint(root / "ar0", model, loading.load_tokenizer(str(train_base)), ar_meta, head=head)
    ar = ActivationReconstructor.from_pretrained(root / "ar0")
    target = ar.reconstruct([GOOD])[0]
    rewards = {
        t: -float(2 * (1 - torch.cosine_similarity(ar.reconstruct([t])[0], target, dim=0)))
        for t in (GOOD, BAD)
    }
    assert rewards[GOOD] > rewards[BAD]

    write_sft(root / "av.parquet", target.repeat(8, 1), [GOOD, BAD] * 4)
    write_rl(root / "rl.parquet", target.repeat(2, 1))
    av = {
        "data": str(root / "av.parquet"),
        "steps": 25,
        "micro_batch_size": 8,
        "checkpoint_every": 25,
        "adapter": {"kind": "full"},
        "optim": {"lr": 1e-2},
    }
    av_dir = train_av(make_recipe(train_base, root / "sft", av=av), RunOptions(quiet=True))
    return {"root": root, "av": av_dir, "ar": root / "ar0", "target": target, "rewards": rewards}


def candidate_probs(av_dir: Path, target: torch.Tensor) -> dict[str, float]:
    av = ActivationVerbalizer.from_pretrained(av_dir)
    return {t: float(response_logprobs(av, target, t).sum().exp()) for t in (GOOD, BAD)}


def grpo_recipe(setup, train_base, out: str, **grpo):
    cfg = {
        "data": str(setup["root"] / "rl.parquet"),
        "av_init": str(setup["av"]),
        "ar_init": str(setup["ar"]),
        "steps": 1,
        "micro_batch_size": 1,
        "grad_accum": 2,
        "group_size": 8,
        "max_new_tokens": 10,
        "checkpoint_every": 1,
        "kl_coef": 0.0,
        "reference": "init",
        "optim": {"lr": 3e-3},
    }
    cfg.update(grpo)
    return make_recipe(train_base, setup["root"] / out, grpo=cfg)


def test_a_grpo_step_raises_the_reward_of_the_policy(setup, train_base):
    before = candidate_probs(setup["av"], setup["target"])
    assert before[GOOD] + before[BAD] > 0.9 and min(before.values()) > 0.1, before  # the SFT premise

    last = grpo.train_grpo(grpo_recipe(setup, train_base, "up"), RunOptions(quiet=True))
    after = candidate_probs(last, setup["target"])
    r = setup["rewards"]

    def expected_reward(p):
        return (p[GOOD] * r[GOOD] + p[BAD] * r[BAD]) / (p[GOOD] + p[BAD])

    assert after[GOOD] > before[GOOD] and after[BAD] < before[BAD], (before, after)
    assert expected_reward(after) > expected_reward(before)

    m = json.loads((last.parent / "metrics.jsonl").read_text().splitlines()[0])
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)  # reference = the starting policy, before its first update
    assert m["outputs"] == 16 and 1 <= m["distinct_per_group"] <= 8 and m["parsed"] > 0.5
    for key in ("reward", "entropy", "length", "templates"):
        assert key in m
    meta = NLAMeta.load(last)
    assert meta.training.stage == "grpo" and meta.training.parent == str(setup["av"])
    assert meta.base_model == str(train_base)


def test_collapse_to_one_template_stops_the_run(setup, train_base):
    recipe = grpo_recipe(setup, train_base, "collapse", steps=3, temperature=0.02, collapse_patience=2)
    with pytest.raises(
        grpo.PolicyCollapsed, match=r"GRPO stopped at step 2: .* all 16 sampled outputs were one template"
    ):
        grpo.train_grpo(recipe, RunOptions(quiet=True))
    run = setup["root"] / "collapse" / "grpo"
    assert [p.name for p in run.glob("step_*")] == ["step_000001"]
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert m["templates"] == 1 and m["distinct_per_group"] == 1


def test_ar_trained_alongside_and_lora_reference(setup, train_base):
    from hubkit.reconstructor import ActivationReconstructor

    last = grpo.train_grpo(
        grpo_recipe(setup, train_base, "both", train_ar=True, ar_lr=1e-2, kl_coef=0.1, reference="base"),
        RunOptions(quiet=True),
    )
    ar = ActivationReconstructor.from_pretrained(last / "ar")
    assert not torch.equal(ar.head.weight, torch.eye(ar.meta.d_model))
    assert NLAMeta.load(last / "ar").training.stage == "grpo"
    m = json.loads((last.parent / "metrics.jsonl").read_text().splitlines()[0])
    assert m["kl"] > 0 and m["ar_loss"] >= 0  # reference = the untrained base: far from the policy


def lora_stage(data: Path, lr: float) -> dict:
    """Two steps of a rank-4 LoRA on `data`: a small LoRA half (AV or AR) for GRPO."""
    return {
        "data": str(data),
        "steps": 2,
        "micro_batch_size": 8,
        "checkpoint_every": 2,
        "adapter": {"r": 4, "alpha": 8},
        "optim": {"lr": lr},
    }


@pytest.fixture(scope="module")
def lora_av(setup, train_base):
    """The AV SFT with a small LoRA (two steps): a LoRA policy for GRPO."""
    from hubkit.train.sft_av import train_av

    av = lora_stage(setup["root"] / "av.parquet", 5e-2)
    return train_av(make_recipe(train_base, setup["root"] / "lora-sft", av=av), RunOptions(quiet=True))


def test_lora_policy_reference_is_the_adapter_disabled_or_frozen(setup, train_base, lora_av):
    kls = {}
    for reference in ("init", "base"):
        last = grpo.train_grpo(
            grpo_recipe(
                setup, train_base, f"lora-{reference}", av_init=str(lora_av), reference=reference, kl_coef=0.1
            ),
            RunOptions(quiet=True),
        )
        kls[reference] = json.loads((last.parent / "metrics.jsonl").read_text().splitlines()[0])["kl"]
        config = json.loads((last / "adapter_config.json").read_text())
        assert config["r"] == 4 and not (last / "ref").exists()  # only the policy adapter is saved
        reloaded = ActivationVerbalizer.from_pretrained(last)
        assert reloaded.meta.adapter.kind == "lora"
    assert kls["init"] == pytest.approx(0.0, abs=1e-7)  # the frozen copy of the starting adapter
    assert kls["base"] > 1e-4  # the base without the SFT adapter differs from the policy


def test_a_damaged_init_checkpoint_is_refused_naming_the_file(setup, train_base, tmp_path):
    import shutil

    from hubkit.errors import CheckpointError

    av = shutil.copytree(setup["av"], tmp_path / "av")
    weights = next(p for p in sorted(av.glob("*.safetensors")))
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    recipe = grpo_recipe(setup, train_base, "damaged", av_init=str(av))
    with pytest.raises(CheckpointError, match=rf"{weights}: sha256 differs"):
        grpo.train_grpo(recipe, RunOptions(quiet=True))
    assert not list((setup["root"] / "damaged" / "grpo").glob("step_*"))


# -- rollouts on an engine ---------------------------------------------------------------------------
def adapter_tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def test_rollouts_on_an_engine_sample_each_steps_policy(setup, train_base, lora_av, tmp_path, monkeypatch):
    """A remote engine (vLLM's completions protocol, generating with peft there) is given the policy's
    adapter before every step: first the starting adapter, then the one the first update wrote. (The
    KL to the base keeps the gradient non-zero when every sampled output of the barely trained policy
    gets the same reward.)"""
    from engines.embeds_server import EmbedsServer  # tests/engines, on the path as a test package

    from hubkit import engines, loading

    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path))
    base = loading.load_causal_lm(str(train_base))
    with EmbedsServer(base, loading.load_tokenizer(str(train_base)).eos_token_id) as server:
        recipe = grpo_recipe(
            setup,
            train_base,
            "engine",
            av_init=str(lora_av),
            steps=2,
            rollout_engine=server.url,
            temperature=0.9,
            kl_coef=0.1,
            reference="base",
        )
        last = grpo.train_grpo(recipe, RunOptions(quiet=True))
        engines.close_engines()
    assert len(server.loaded) == 2  # one adapter per step, each loaded by path
    for (_, served), expected in zip(server.loaded, [lora_av, last.parent / "step_000001"]):
        got, want = adapter_tensors(served), adapter_tensors(expected)
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    assert not torch.equal(*(next(iter(adapter_tensors(p).values())) for _, p in server.loaded))
    asked = [r["model"] for r in server.requests]
    names = [name for name, _ in server.loaded]
    assert asked == sorted(asked, key=names.index)  # every step-1 rollout before any of step 2
    assert all(r["temperature"] == 0.9 and "seed" in r for r in server.requests)
    assert sum(len(r["prompt_embeds"]) for r in server.requests) == 2 * 16
    lines = (last.parent / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["outputs"] for x in lines] == [16, 16]


def test_rollout_engine_is_checked(setup, train_base, tmp_path, monkeypatch):
    from hubkit.errors import EngineError, HubkitError
    from hubkit.train.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"field `grpo.rollout_engine`: unknown engine 'sglang'"):
        grpo_recipe(setup, train_base, "bad", rollout_engine="sglang")
    monkeypatch.setattr("hubkit.engines.vllm_installed", lambda: False)
    with pytest.raises(EngineError, match="--engine vllm was asked for but vLLM is not installed"):
        grpo.train_grpo(
            grpo_recipe(setup, train_base, "no-vllm", rollout_engine="vllm"), RunOptions(quiet=True)
        )
    with pytest.raises(
        HubkitError, match="this policy trains all weights, so set `rollout_engine: transformers`"
    ):
        rollouts.rollout_engine("http://127.0.0.1:9", "embedding_replace", None)
    assert rollouts.rollout_engine("auto", "embedding_replace", None) == "transformers"
    assert rollouts.rollout_engine("auto", "embedding_replace", "av") == "transformers"  # vLLM absent


def test_engine_rows_padded_as_generate_leaves_them():
    got = rollouts.pad_rows([[5, 6], [7, 8, 9], []], max_new_tokens=3, eos_id=2, pad_id=0)
    assert got.tolist() == [[5, 6, 2], [7, 8, 9], [2, 0, 0]]


# -- the fixed yardstick, the alarms and what is refused before loading ---------------------------------
def metrics_lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def trainer_for(recipe):
    from hubkit.train.loop import Runner

    runner = Runner(recipe, "grpo", RunOptions(quiet=True))
    return grpo.GRPOTrainer(recipe, runner, runner.data_path("RL"))


def test_the_frozen_ar_reads_the_rollouts_while_the_co_trained_one_learns(setup, train_base):
    from hubkit.reconstructor import ActivationReconstructor

    frozen_run = trainer_for(grpo_recipe(setup, train_base, "yard-frozen", train_ar=False))
    frozen_run.train()
    t = trainer_for(grpo_recipe(setup, train_base, "yard", steps=2, ar_lr=1e-2))
    last = t.train()
    sft = ActivationReconstructor.from_pretrained(setup["ar"], dtype="float32")
    texts = ["cat", "dog", "a bird"]
    torch.testing.assert_close(t.frozen_ar.reconstruct(texts), sft.reconstruct(texts))  # never trained
    assert not torch.allclose(t.ar.reconstruct(texts), sft.reconstruct(texts))  # trained alongside
    m = metrics_lines(last.parent)
    first = metrics_lines(frozen_run.runner.run_dir)[0]
    # step 1 samples the same rollouts in both runs and the frozen copy is the SFT AR: same reading
    assert m[0]["frozen_cos"] == pytest.approx(first["frozen_cos"], abs=1e-5)
    assert m[0]["frozen_real_minus_empty"] == pytest.approx(first["frozen_real_minus_empty"], abs=1e-5)
    for line in m:
        assert 0 <= line["succeeded"] <= line["parsed"] <= 1 and line["ar_loss"] >= 0
        phases = [line[f"seconds_{k}"] for k in ("sample", "score", "logprobs", "update", "ar")]
        assert all(x >= 0 for x in phases) and sum(phases) <= line["seconds"]
    saved = json.loads((last / "trainer_state.json").read_text())["extra"]["alarm_history"]
    assert saved["length"] == [line["length"] for line in m]


def test_a_lora_ar_trains_alongside_a_frozen_copy_of_its_adapter(setup, train_base, tmp_path):
    from hubkit.reconstructor import ActivationReconstructor
    from hubkit.train.sft_ar import train_ar

    from .train_helpers import TEXTS

    write_sft(
        setup["root"] / "ar.parquet", torch.randn(8, 32, generator=torch.Generator().manual_seed(1)), TEXTS
    )
    ar = lora_stage(setup["root"] / "ar.parquet", 1e-2)
    ar_dir = train_ar(make_recipe(train_base, tmp_path / "lora-ar", ar=ar), RunOptions(quiet=True))
    t = trainer_for(grpo_recipe(setup, train_base, "lora-ar-grpo", ar_init=str(ar_dir), ar_lr=5e-2))
    last = t.train()
    assert t.frozen_ar.model is t.ar.model and t.frozen_ar.adapter_name == grpo_models.FROZEN_AR  # one base
    sft = ActivationReconstructor.from_pretrained(ar_dir, dtype="float32")
    torch.testing.assert_close(t.frozen_ar.reconstruct(TEXTS), sft.reconstruct(TEXTS))
    trained = ActivationReconstructor.from_pretrained(last / "ar", dtype="float32")
    torch.testing.assert_close(trained.reconstruct(TEXTS), t.ar.reconstruct(TEXTS))
    assert not torch.allclose(trained.reconstruct(TEXTS), sft.reconstruct(TEXTS))
    saved = json.loads(
        (last / "ar" / "adapter_model.safetensors").with_name("adapter_config.json").read_text()
    )
    assert saved["r"] == 4
    from safetensors.torch import load_file

    assert not any(grpo_models.FROZEN_AR in k for k in load_file(str(last / "ar" / "adapter_model.safetensors")))


def test_an_alarm_stops_the_run_naming_the_last_good_checkpoint(setup, train_base):
    recipe = grpo_recipe(
        setup, train_base, "alarm", steps=3, alarms={"window": 1, "min_distinct": 8.5, "min_parsed": None}
    )
    with pytest.raises(
        alarms.AlarmTripped, match=rf"step 1: diversity: .*< 8.5.*Last good checkpoint: {setup['av']}"
    ):
        grpo.train_grpo(recipe, RunOptions(quiet=True))
    assert not list((setup["root"] / "alarm" / "grpo").glob("step_*"))


def test_refused_before_any_model_loads(setup, train_base, tmp_path, monkeypatch):
    import shutil

    from hubkit.errors import CheckpointError

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(grpo, "load_policy", no_loading)
    with pytest.raises(CheckpointError, match=r"field `grpo.max_new_tokens`: 2 tokens cannot hold"):
        grpo.train_grpo(grpo_recipe(setup, train_base, "cap", max_new_tokens=2), RunOptions(quiet=True))
    other = shutil.copytree(setup["ar"], tmp_path / "ar-other-layer")
    meta = NLAMeta.load(other)
    meta.layer = 0
    meta.save(other / "nla_meta.yaml")
    from hubkit.checkpoint import write_file_hashes

    write_file_hashes(other)
    with pytest.raises(CheckpointError, match=r"grpo.av_init .* and grpo.ar_init .*layer: AV 1 vs AR 0"):
        grpo.train_grpo(grpo_recipe(setup, train_base, "layers", ar_init=str(other)), RunOptions(quiet=True))


def test_a_full_weights_av_whose_reference_does_not_fit_is_refused(setup, train_base, monkeypatch):
    from hubkit.errors import CheckpointError

    asked = []  # the devices whose free memory was read
    monkeypatch.setattr(distributed, "available_bytes", lambda device="cpu": asked.append(device) or 1000)
    monkeypatch.setattr(grpo, "load_policy", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    with pytest.raises(
        CheckpointError, match=r"second full copy: about .* GB .* but cpu has 0.0 GB free.*kl_coef: 0"
    ):
        grpo.train_grpo(grpo_recipe(setup, train_base, "mem", kl_coef=0.1), RunOptions(quiet=True))
    assert asked == ["cpu"]  # the device the run trains on
    recipe = grpo_recipe(setup, train_base, "mem1", kl_coef=0.1)
    with pytest.raises(CheckpointError, match=r"but cuda:0 has 0.0 GB free"):
        grpo.preflight(recipe, recipe.grpo, setup["av"], setup["ar"], "float32", "cuda:0")
    assert asked[-1] == "cuda:0"  # a GPU run checks that GPU's memory, not the host's
    # no reference is needed with β = 0: the same AV passes the check
    recipe = grpo_recipe(setup, train_base, "mem0", kl_coef=0.0)
    grpo.preflight(recipe, recipe.grpo, setup["av"], setup["ar"], "float32")
