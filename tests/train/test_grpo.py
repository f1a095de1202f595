from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hubkit.meta import NLAMeta
from hubkit.train import grpo as G
from hubkit.train import rollouts as R
from hubkit.train.loop import RunOptions
from hubkit.verbalizer import ActivationVerbalizer, Explanation

from .train_helpers import make_recipe, response_logprobs, write_rl, write_sft

GOOD, BAD = "cat", "dog"


# -- pure pieces --------------------------------------------------------------------------------------
def test_group_advantages_standardise_within_each_group():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    a = G.group_advantages(r, 3)
    first = (r[:3] - r[:3].mean()) / (r[:3].std(unbiased=False) + 1e-4)
    torch.testing.assert_close(a[:3], first)
    assert torch.equal(a[3:], torch.zeros(3))  # a flat group teaches nothing


def test_clipped_objective_matches_the_formula():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]])
    old = torch.tensor([[-1.5, -2.0], [-0.2, -0.1]])
    ref = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    per_seq, kl = G.clipped_objective(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.1)
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
    r = G.rewards_for(d, recon, targets, parse_penalty=4.0)
    torch.testing.assert_close(r, torch.tensor([0.0, -4.0, -(2 - 2**0.5)]))
    assert G.template_of("The  Cat 12") == G.template_of("the cat 7") != G.template_of("the dog")


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

    last = G.train_grpo(grpo_recipe(setup, train_base, "up"), RunOptions(quiet=True))
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
        G.PolicyCollapsed, match=r"GRPO stopped at step 2: .* all 16 sampled outputs were one template"
    ):
        G.train_grpo(recipe, RunOptions(quiet=True))
    run = setup["root"] / "collapse" / "grpo"
    assert [p.name for p in run.glob("step_*")] == ["step_000001"]
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert m["templates"] == 1 and m["distinct_per_group"] == 1


def test_ar_trained_alongside_and_lora_reference(setup, train_base):
    from hubkit.reconstructor import ActivationReconstructor

    last = G.train_grpo(
        grpo_recipe(setup, train_base, "both", train_ar=True, ar_lr=1e-2, kl_coef=0.1, reference="base"),
        RunOptions(quiet=True),
    )
    ar = ActivationReconstructor.from_pretrained(last / "ar")
    assert not torch.equal(ar.head.weight, torch.eye(ar.meta.d_model))
    assert NLAMeta.load(last / "ar").training.stage == "grpo"
    m = json.loads((last.parent / "metrics.jsonl").read_text().splitlines()[0])
    assert m["kl"] > 0 and m["ar_loss"] >= 0  # reference = the untrained base: far from the policy


@pytest.fixture(scope="module")
def lora_av(setup, train_base):
    """The AV SFT with a small LoRA (two steps): a LoRA policy for GRPO."""
    from hubkit.train.sft_av import train_av

    av = {
        "data": str(setup["root"] / "av.parquet"),
        "steps": 2,
        "micro_batch_size": 8,
        "checkpoint_every": 2,
        "adapter": {"r": 4, "alpha": 8},
        "optim": {"lr": 5e-2},
    }
    return train_av(make_recipe(train_base, setup["root"] / "lora-sft", av=av), RunOptions(quiet=True))


def test_lora_policy_reference_is_the_adapter_disabled_or_frozen(setup, train_base, lora_av):
    kls = {}
    for reference in ("init", "base"):
        last = G.train_grpo(
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
        G.train_grpo(recipe, RunOptions(quiet=True))
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
        last = G.train_grpo(recipe, RunOptions(quiet=True))
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
        G.train_grpo(grpo_recipe(setup, train_base, "no-vllm", rollout_engine="vllm"), RunOptions(quiet=True))
    with pytest.raises(
        HubkitError, match="this policy trains all weights, so set `rollout_engine: transformers`"
    ):
        R.rollout_engine("http://127.0.0.1:9", "embedding_replace", None)
    assert R.rollout_engine("auto", "embedding_replace", None) == "transformers"
    assert R.rollout_engine("auto", "embedding_replace", "av") == "transformers"  # vLLM absent


def test_engine_rows_padded_as_generate_leaves_them():
    got = R.pad_rows([[5, 6], [7, 8, 9], []], max_new_tokens=3, eos_id=2, pad_id=0)
    assert got.tolist() == [[5, 6, 2], [7, 8, 9], [2, 0, 0]]
