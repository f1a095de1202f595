"""Sharded training (FSDP2, gloo on CPU): two processes train what one unsharded process trains.

Tolerance: every comparison is float32 against float32. The two runs differ only in the order of
floating-point sums (a reduce-scatter adds the two ranks' gradients; one process accumulates its
micro-batches in turn), about 1 ulp per gradient element. AdamW divides by sqrt(v) + eps, which
amplifies that for elements whose gradient is near zero, so weights after 3 steps are compared
with atol 1e-6 on the tiny model (the largest difference seen is 2e-7 on weights of size ~0.2)
and losses with rtol 1e-6. On SmolLM2-135M (slow) a few elements (212 of 2.44 M) move by up to 1.4 % of
one step's lr, so there the bound is 5 % of lr per step, and losses still agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hubkit.train.loop import RunOptions
from hubkit.train.recipe import DistributedRecipe

from .test_grpo import grpo_recipe
from .test_grpo import setup as grpo_setup  # noqa: F401 (test_grpo's fixture, under this name here)
from .train_helpers import D_MODEL, torchrun

REPO = Path(__file__).resolve().parents[2]
needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")


def launch(stage: str, recipe: Path, *extra: str) -> subprocess.CompletedProcess:
    return torchrun(["-m", "hubkit.cli", "train", stage, str(recipe), "-q", *extra])


def write_recipe(path: Path, base: Path, out: Path, strategy: str, **sections) -> Path:
    data = {
        "base_model": str(base),
        "layer": 1,
        "output_dir": str(out),
        "dtype": "float32",
        "distributed": {"strategy": strategy, "global_batch_size": 4},
        **sections,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def in_process(stage: str, recipe: Path):
    from hubkit.train.recipe import load_recipe

    return in_process_recipe(stage, load_recipe(recipe))


def in_process_recipe(stage: str, r):
    if stage == "av":
        from hubkit.train.sft_av import train_av

        return train_av(r, RunOptions(quiet=True))
    if stage == "ar":
        from hubkit.train.sft_ar import train_ar

        return train_ar(r, RunOptions(quiet=True))
    from hubkit.train.grpo import train_grpo

    return train_grpo(r, RunOptions(quiet=True))


def assert_same_step(a: Path, b: Path, files: list[str]) -> None:
    """Weights and optimiser state of two step folders equal within the module's tolerance."""
    for name in [*files, "trainer_state.safetensors"]:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys(), name
        for k in x:
            torch.testing.assert_close(x[k], y[k], atol=1e-6, rtol=1e-5, msg=f"{name}:{k}")


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


SFT = {"steps": 3, "micro_batch_size": 1, "checkpoint_every": 2, "optim": {"lr": 1e-2}}


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory, train_base, sft_table):
    """The recipes of the AV (LoRA, activation checkpointing per block) and AR (full) comparisons."""
    root = tmp_path_factory.mktemp("fsdp")
    data = str(sft_table[0])
    sections = {
        "av": {**SFT, "data": data, "adapter": {"r": 4}, "gradient_checkpointing": True},
        "ar": {**SFT, "data": data, "head_lr": 1e-2, "adapter": {"kind": "full"}, "optim": {"lr": 1e-3}},
    }
    one = write_recipe(root / "one.yaml", train_base, root / "one", "ddp", **sections)
    two = write_recipe(root / "two.yaml", train_base, root / "two", "fsdp", **sections)
    return {"root": root, "one": one, "two": two, "base": train_base}


@needs_torchrun
@pytest.mark.parametrize(
    ("stage", "files"),
    [("av", ["adapter_model.safetensors"]), ("ar", ["model.safetensors", "value_head.safetensors"])],
)
def test_two_sharded_processes_train_what_one_process_trains(sft_runs, stage, files):
    done = launch(stage, sft_runs["two"])
    assert done.returncode == 0, done.stderr[-3000:]
    single = in_process(stage, sft_runs["one"])
    sharded = sft_runs["root"] / "two" / stage
    for step in ("step_000002", "step_000003"):
        assert_same_step(sharded / step, single.parent / step, files)
    torch.testing.assert_close(losses(sharded), losses(single.parent), rtol=1e-6, atol=0)
    first = load_file(str(single.parent / "step_000002" / files[0]))
    last = load_file(str(single / files[0]))
    assert any(not torch.equal(first[k], last[k]) for k in first)  # the weights moved: not a vacuous match
    state = json.loads((sharded / "step_000003" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4


@needs_torchrun
def test_sharded_checkpoints_load_as_ordinary_ones(sft_runs):
    """A step written by FSDP loads with the public API and explains / reconstructs like the single run's."""
    from hubkit import ActivationReconstructor, ActivationVerbalizer

    two, one = sft_runs["root"] / "two", sft_runs["root"] / "one"
    if not (two / "ar" / "step_000003").is_dir():
        pytest.skip("needs the comparison runs")
    v = torch.randn(2, D_MODEL, generator=torch.Generator().manual_seed(3))
    texts = [ActivationVerbalizer.from_pretrained(r / "av" / "step_000003").explain(v) for r in (two, one)]
    assert texts[0] == texts[1]
    recon = [
        ActivationReconstructor.from_pretrained(r / "ar" / "step_000003").reconstruct(texts[0])
        for r in (two, one)
    ]
    torch.testing.assert_close(recon[0], recon[1], atol=1e-5, rtol=1e-5)


@needs_torchrun
def test_killed_rank_names_the_last_good_checkpoint_and_resume_is_exact(sft_runs, tmp_path):
    import psutil

    recipe = tmp_path / "kill.yaml"
    data = yaml.safe_load(sft_runs["two"].read_text())
    data["output_dir"] = str(tmp_path / "kill")
    recipe.write_text(yaml.safe_dump(data))
    cmd = ["torchrun", "--nproc_per_node", "2", "-m", "hubkit.cli", "train", "av", str(recipe), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, "--debug-hang-after-step", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("hubkit-train: hanging after step 2"):
            break
    time.sleep(0.5)
    victims = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert len(victims) == 1
    victims[0].kill()
    out, _ = proc.communicate(timeout=120)
    lines += out.splitlines(True)
    errors = [line for line in lines if line.startswith("error:")]
    assert proc.returncode != 0
    assert len(errors) == 1, "".join(lines)[-3000:]
    run = tmp_path / "kill" / "av"
    assert f"the last good checkpoint is {run / 'step_000002'}" in errors[0]
    assert "--resume" in errors[0]

    done = launch("av", recipe, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    single = sft_runs["root"] / "one" / "av"
    if not (single / "step_000003").is_dir():
        in_process("av", sft_runs["one"])
    assert_same_step(run / "step_000003", single / "step_000003", ["adapter_model.safetensors"])
    assert losses(run) == pytest.approx(losses(single), rel=1e-6)


@needs_torchrun
def test_one_process_fsdp_with_bf16_compute_keeps_fp32_weights(sft_runs, tmp_path):
    """The GPU check's configuration on CPU: one process, float32 sharded weights, bf16 gathered for compute.

    bf16 has an 8-bit mantissa (relative step 2^-8 = 0.4 %), so losses agree with the float32 run to
    a few per cent, and the weights written are float32 and differ from the float32 run's."""
    data = yaml.safe_load(sft_runs["two"].read_text())
    data["output_dir"] = str(tmp_path / "mp")
    data["distributed"] = {"strategy": "fsdp", "global_batch_size": 4, "mixed_precision": "bfloat16"}
    recipe = tmp_path / "mp.yaml"
    recipe.write_text(yaml.safe_dump(data))
    done = torchrun(["-m", "hubkit.cli", "train", "av", str(recipe), "-q"], procs=1)
    assert done.returncode == 0, done.stderr[-3000:]
    single = sft_runs["root"] / "one" / "av"
    if not (single / "step_000003").is_dir():
        in_process("av", sft_runs["one"])
    run = tmp_path / "mp" / "av"
    assert losses(run) == pytest.approx(losses(single), rel=0.03)
    assert losses(run) != losses(single)
    mp, fp = (load_file(str(r / "step_000003" / "adapter_model.safetensors")) for r in (run, single))
    assert all(t.dtype == torch.float32 for t in mp.values())
    assert any(not torch.equal(mp[k], fp[k]) for k in mp)


# -- GRPO ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parsing_lora_av(grpo_setup):  # noqa: F811 (the imported fixture)
    """A LoRA AV (one small step) over test_grpo's fully fine-tuned cat/dog AV as its base: its samples parse."""
    from hubkit.train.sft_av import train_av

    from .train_helpers import make_recipe

    av = {
        "data": str(grpo_setup["root"] / "av.parquet"),
        "steps": 1,
        "micro_batch_size": 8,
        "checkpoint_every": 1,
        "adapter": {"r": 4},
        "optim": {"lr": 1e-4},
    }
    return train_av(
        make_recipe(grpo_setup["av"], grpo_setup["root"] / "lora-on-av", av=av), RunOptions(quiet=True)
    )


@needs_torchrun
@pytest.mark.parametrize("policy", ["full", "lora"])
def test_grpo_sharded_policy_and_reference_match_one_process(
    grpo_setup,  # noqa: F811 (the imported fixture)
    parsing_lora_av,
    train_base,
    tmp_path,
    policy,
):
    """GRPO under FSDP equals one process: a full policy with a second, frozen model as reference (the base),
    or a LoRA policy whose reference is a frozen copy of its starting adapter; rollouts gathered, the AR
    co-trained. `grpo_setup` (test_grpo's `setup`): an AV trained to answer its vector with cat or dog."""
    start = grpo_setup["av"] if policy == "full" else parsing_lora_av
    reference = "base" if policy == "full" else "init"
    recipe = grpo_recipe(
        grpo_setup,
        train_base if policy == "full" else grpo_setup["av"],  # the LoRA's base is the full AV
        f"fsdp-one-{policy}",
        av_init=str(start),
        steps=3,
        checkpoint_every=3,
        group_size=4,
        max_new_tokens=12,
        kl_coef=0.1,
        reference=reference,
        train_ar=True,
        ar_lr=1e-3,
    )
    recipe.distributed = DistributedRecipe(strategy="ddp", global_batch_size=2)
    single = in_process_recipe("grpo", recipe)
    recipe.output_dir = str(tmp_path / "two")
    recipe.distributed = DistributedRecipe(strategy="fsdp", global_batch_size=2)
    done = launch("grpo", recipe.save(tmp_path / "two.yaml"))
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = tmp_path / "two" / "grpo" / "step_000003"
    weights = "model.safetensors" if policy == "full" else "adapter_model.safetensors"
    assert_same_step(sharded, single, [weights, "ar/model.safetensors", "ar/value_head.safetensors"])
    a = [json.loads(x) for x in (sharded.parent / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (single.parent / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(a, b, strict=True):
        for key in ("reward", "kl", "parsed", "length", "ar_loss"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7, nan_ok=True), key
    assert (
        max(m["parsed"] for m in b) > 0.5 and max(m["kl"] for m in b) > 0
    )  # a real update, not all penalties
    init, after = (load_file(str(d / weights)) for d in (start, single))
    assert any(not torch.equal(init[k], after[k]) for k in after)


def test_grpo_on_an_engine_is_refused_under_fsdp(grpo_setup, train_base):  # noqa: F811 (the imported fixture)
    from hubkit.train.distributed import DistributedError, check_stage

    recipe = grpo_recipe(grpo_setup, train_base, "engine", rollout_engine="http://127.0.0.1:9/v1")
    recipe.distributed = DistributedRecipe(strategy="fsdp")
    with pytest.raises(
        DistributedError, match=r"rollout_engine http://127\.0\.0\.1:9/v1 cannot take a sharded"
    ):
        check_stage(
            recipe.distributed, recipe.grpo, "grpo", 2, torch.device("cpu"), "float32", str(train_base)
        )


# -- memory --------------------------------------------------------------------------------------------
@needs_torchrun
def test_each_rank_holds_half_of_the_parameters_and_optimiser_state(tmp_path):
    """Bytes of local shards measured on each rank (benchmarks/bench_fsdp_memory.py) against one process."""
    results = {}
    for n in (1, 2):
        out = tmp_path / f"{n}.json"
        done = torchrun(["benchmarks/bench_fsdp_memory.py", "--json", str(out)], procs=n, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results[n] = json.loads(out.read_text())
    whole = results[1]["ranks"][0]
    assert whole["parameters"] == results[1]["parameters"] * 4  # float32, independently counted
    for rank in results[2]["ranks"]:  # dim-0 shards of odd-sized tensors differ by a row: within 1 %
        for key in ("parameters", "gradients", "optimizer"):
            assert rank[key] == pytest.approx(whole[key] / 2, rel=0.01), (key, rank, whole)
    assert results[2]["bytes_per_parameter"] == pytest.approx(16.0, rel=0.01)  # 4 weight + 4 grad + 8 AdamW


@pytest.mark.slow
@needs_torchrun
def test_smollm2_two_sharded_processes_train_what_one_process_trains(tmp_path):
    """The same comparison on the real SmolLM2-135M (layer 20, LoRA r8, 2 steps, float32)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hubkit import models

    models.prepare("smollm2-135m")
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(8, 576, generator=g) * 50
    texts = [f"an explanation about topic {i}: cats, rivers and code" for i in range(8)]
    col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.flatten().numpy(), pa.float32()), 576)
    data = tmp_path / "sft.parquet"
    pq.write_table(
        pa.table(
            {
                "doc_id": [f"d{i}" for i in range(8)],
                "position": list(range(8)),
                "vector": col,
                "explanation": texts,
            }
        ),
        data,
    )
    av = {
        "data": str(data),
        "steps": 2,
        "micro_batch_size": 1,
        "checkpoint_every": 2,
        "max_length": 24,
        "adapter": {"r": 8},
        "optim": {"lr": 1e-3},
    }
    common = {"nla": {"injection_scale": "sqrt_d_model"}, "av": av}
    one = write_recipe(tmp_path / "one.yaml", "smollm2-135m", tmp_path / "one", "ddp", **common)
    two = write_recipe(tmp_path / "two.yaml", "smollm2-135m", tmp_path / "two", "fsdp", **common)
    for recipe in (one, two):
        text = yaml.safe_load(recipe.read_text())
        text["layer"] = 20
        recipe.write_text(yaml.safe_dump(text))
    done = launch("av", two)
    assert done.returncode == 0, done.stderr[-3000:]
    single = in_process("av", one)
    torch.testing.assert_close(losses(tmp_path / "two" / "av"), losses(single.parent), rtol=1e-6, atol=0)
    # AdamW moves each element by lr·m/(sqrt(v)+eps): where a gradient element is near zero, the ulp-level
    # difference between a sum over ranks and a sum over micro-batches changes that ratio, so a few
    # elements differ by a fraction of lr (measured: at most 1.4e-5 = 1.4 % of lr, in 212 of 2.44 M elements)
    a = load_file(str(tmp_path / "two" / "av" / "step_000002" / "adapter_model.safetensors"))
    b = load_file(str(single / "adapter_model.safetensors"))
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert float(diff.max()) <= 0.05 * 1e-3 * 2  # 5 % of lr per step, 2 steps
    assert float((diff > 1e-6).float().mean()) < 1e-3
