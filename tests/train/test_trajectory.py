from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hubkit.errors import CheckpointError
from hubkit.meta import NLAMeta
from hubkit.train import trajectory
from hubkit.train.loop import HANG_MESSAGE, RunOptions
from hubkit.train.sft_ar import train_ar
from hubkit.train.sft_av import train_av

from .train_helpers import make_recipe, write_sft

# dropout and a warm-up + linear decay make RNG and scheduler state matter for an exact resume
AV = {
    "steps": 6,
    "micro_batch_size": 2,
    "grad_accum": 2,
    "checkpoint_every": 2,
    "adapter": {"r": 4, "alpha": 8, "dropout": 0.1},
    "optim": {"lr": 1e-2, "schedule": "linear", "warmup_steps": 2},
}


def _recipe_file(path: Path, base: Path, out: Path, data: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(base),
                "layer": 1,
                "output_dir": str(out),
                "seed": 3,
                "av": {**AV, "data": str(data)},
            }
        )
    )
    return path


def _child(recipe_path: str, fd: int) -> None:
    """The killed run: the real `hubkit train av` command in a forked process, stdout into a pipe."""
    torch.set_num_threads(1)  # no OpenMP pool inherited across fork
    os.environ["OMP_NUM_THREADS"] = "1"  # and hubkit's thread policy leaves it so
    os.dup2(fd, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    from hubkit.cli.train import train

    train.main(["av", recipe_path, "--debug-hang-after-step", "3"], standalone_mode=False)


def test_sigkilled_run_resumes_to_the_same_weights(tmp_path, train_base, sft_table):
    import multiprocessing

    data = sft_table[0]
    recipe_path = _recipe_file(tmp_path / "r.yaml", train_base, tmp_path / "killed", data)
    read_fd, write_fd = os.pipe()
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(str(recipe_path), write_fd))
    proc.start()
    os.close(write_fd)
    lines: list[str] = []
    try:
        with os.fdopen(read_fd) as out:
            for line in out:  # block until the run reports it is past step 3 (step 2 is on disk)
                lines.append(line)
                if line.startswith(HANG_MESSAGE):
                    break
        assert any(line.startswith(HANG_MESSAGE) for line in lines), "".join(lines)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        if proc.is_alive():
            proc.kill()
    run = tmp_path / "killed" / "av"
    assert [p.name for p in sorted(run.glob("step_*"))] == [
        "step_000002"
    ]  # step 3's work died with the process

    from hubkit.train.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    resumed = train_av(recipe, RunOptions(resume=True, quiet=True))
    straight = train_av(  # both runs in `dtype: auto` (bfloat16 on a CPU with native bf16)
        make_recipe(train_base, tmp_path / "straight", seed=3, dtype="auto", av={**AV, "data": str(data)}),
        RunOptions(quiet=True),
    )
    assert resumed.name == straight.name == "step_000006"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("step_", ".step_"))) == [
        "step_000002",
        "step_000004",
        "step_000006",
    ]
    for name in ("step_000004", "step_000006"):
        a = load_file(str(run / name / "adapter_model.safetensors"))
        b = load_file(str(straight.parent / name / "adapter_model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
        ma, mb = NLAMeta.load(run / name).training, NLAMeta.load(straight.parent / name).training
        assert (ma.step, ma.tokens_seen, ma.parent) == (mb.step, mb.tokens_seen, mb.parent)
        assert ma.loss == pytest.approx(mb.loss, rel=1e-5)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # step 3 logged once, though it ran twice


def test_resume_refuses_another_recipe_or_other_data(tmp_path, train_base, sft_table):
    data, vectors, texts = sft_table
    ar = {"steps": 2, "micro_batch_size": 4, "checkpoint_every": 1, "adapter": {"r": 2}, "data": str(data)}
    out = tmp_path / "run"
    train_ar(make_recipe(train_base, out, ar=ar), RunOptions(quiet=True))
    longer = make_recipe(train_base, out, ar={**ar, "steps": 4})
    with pytest.raises(
        CheckpointError, match=r"already holds checkpoints \(latest step_000002\); pass --resume"
    ):
        train_ar(longer, RunOptions(quiet=True))
    other_lr = make_recipe(train_base, out, ar={**ar, "steps": 4, "optim": {"lr": 3e-4}})
    with pytest.raises(CheckpointError, match=r"refusing to resume from .*step_000002: the recipe differs"):
        train_ar(other_lr, RunOptions(quiet=True, resume=True))
    other_data = write_sft(tmp_path / "other.parquet", vectors.flip(0), texts)
    with pytest.raises(CheckpointError, match="the training data differ"):
        train_ar(longer, RunOptions(quiet=True, resume=True, data=str(other_data)))
    assert sorted(p.name for p in (out / "ar").glob("step_*")) == ["step_000001", "step_000002"]
    # the same recipe (steps are part of it) with the same data continues
    same = make_recipe(train_base, out, ar=ar)
    assert train_ar(same, RunOptions(quiet=True, resume=True)).name == "step_000002"  # nothing left to do


def test_partial_folders_are_never_taken_for_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / ".step_000004.partial-abcd").mkdir(parents=True)
    (run / "step_000003").mkdir()  # no trainer state: not a complete checkpoint
    assert trajectory.latest_step(run) is None
    assert trajectory.clean_partials(run) == [run / ".step_000004.partial-abcd"]
    assert not (run / ".step_000004.partial-abcd").exists()


@pytest.mark.parametrize("kind", ["adamw", "adamw_8bit"])
def test_optimizer_state_round_trips_exactly(tmp_path, kind):
    from hubkit.train.adapters import make_optimizer, make_scheduler
    from hubkit.train.recipe import OptimRecipe

    cfg = OptimRecipe(lr=1e-2, optimizer=kind, schedule="cosine", warmup_steps=1)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 128)  # 8192 weights: bitsandbytes keeps 8-bit states from 4096 up
    twin = torch.nn.Linear(64, 128)
    twin.load_state_dict(model.state_dict())
    opt = make_optimizer([{"params": list(model.parameters())}], cfg)
    sched = make_scheduler(opt, cfg, 10)
    x = torch.randn(16, 64)

    def step(m, o, s):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
        s.step()

    for _ in range(3):
        step(model, opt, sched)
    state = trajectory.TrainerState(
        stage="t",
        step=3,
        total_steps=10,
        loss=0.0,
        lr=0.0,
        tokens_seen=0,
        seed=0,
        data_sha256="d",
        config_sha256="c",
        parent=None,
        global_batch=1,
        world_size=1,
    )
    folder = _write_state_only(tmp_path, state, {"main": opt}, {"main": sched})
    resumed = trajectory.read_state(folder)
    if kind == "adamw_8bit":
        assert any(
            t.dtype == torch.uint8 for t in load_file(str(folder / trajectory.TRAINER_STATE_TENSORS)).values()
        )
    twin.load_state_dict(model.state_dict())
    opt2 = make_optimizer([{"params": list(twin.parameters())}], cfg)
    sched2 = make_scheduler(opt2, cfg, 10)
    opt2.load_state_dict(resumed.optimizers["main"])
    sched2.load_state_dict(resumed.schedulers["main"])
    for _ in range(2):
        step(model, opt, sched)
        step(twin, opt2, sched2)
    assert sched2.get_last_lr() == sched.get_last_lr()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def _write_state_only(
    tmp_path: Path, state: trajectory.TrainerState, optimizers: dict, schedulers: dict
) -> Path:
    """`write_step` with no model part: the trainer-state files alone."""
    run = tmp_path / "run"
    run.mkdir()
    return trajectory.write_step(run, state, [], optimizers, schedulers)
