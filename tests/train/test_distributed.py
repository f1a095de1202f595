"""The `distributed:` recipe section and the checks made before a model loads: one clear line each."""

from __future__ import annotations

import os

import pytest
import torch

from hubkit.train import distributed
from hubkit.train.loop import RunOptions
from hubkit.train.recipe import RecipeError

from .train_helpers import make_recipe

AV = {"steps": 1, "micro_batch_size": 2, "adapter": {"r": 4}}


def av_recipe(train_base, tmp_path, sft_table, **section):
    return make_recipe(
        train_base, tmp_path / "run", av={**AV, "data": str(sft_table[0])}, distributed=section
    )


def test_fsdp_without_a_process_group_is_refused(train_base, tmp_path, sft_table, monkeypatch):
    from hubkit.train.sft_av import train_av

    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(distributed.DistributedError, match=r"strategy fsdp needs a process group.*torchrun"):
        train_av(av_recipe(train_base, tmp_path, sft_table, strategy="fsdp"), RunOptions(quiet=True))
    assert not (tmp_path / "run").exists()  # refused before the run folder or a model


def test_a_global_batch_the_processes_cannot_split_is_refused(train_base, tmp_path, sft_table):
    from hubkit.train.sft_av import train_av

    with pytest.raises(
        distributed.DistributedError, match=r"global_batch_size 3 is not a multiple of micro_batch_size 2"
    ):
        train_av(av_recipe(train_base, tmp_path, sft_table, global_batch_size=3), RunOptions(quiet=True))
    assert distributed.grad_accum_for(8, 2, 2, "x") == 2
    with pytest.raises(
        distributed.DistributedError, match=r"not a multiple of micro_batch_size 2 x 4 processes"
    ):
        distributed.grad_accum_for(12, 2, 4, "x")


def test_a_base_that_does_not_fit_is_refused_before_loading(train_base, tmp_path, sft_table, monkeypatch):
    from hubkit.train import adapters
    from hubkit.train.sft_av import train_av

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(adapters, "load_model", no_load)
    recipe = av_recipe(train_base, tmp_path, sft_table, device_memory_gb=1e-4)
    recipe.av.adapter.kind = "full"
    with pytest.raises(
        distributed.DistributedError, match=r"need about .* GB per process .* one device has 0\.0 GB"
    ):
        train_av(recipe, RunOptions(quiet=True))


def test_the_fit_estimate_counts_weights_gradients_and_adamw():
    full = distributed.estimate(7_000_000_000, "float32", "full", 8, "fsdp")
    assert full == pytest.approx(7e9 * 16 / 8)  # 4 weight + 4 grad + 8 AdamW, split 8 ways
    assert distributed.estimate(7_000_000_000, "float32", "full", 8, "ddp") == pytest.approx(7e9 * 16)
    lora = distributed.estimate(1000, "bfloat16", "lora", 1, "ddp", lora_fraction=0.1)
    assert lora == pytest.approx(1000 * 2 + 100 * (2 + 8) + 100 * 2)


def test_count_parameters_matches_the_model(train_base):
    from hubkit import loading

    model = loading.load_causal_lm(str(train_base))
    assert distributed.count_parameters(str(train_base)) == sum(p.numel() for p in model.parameters())


def test_recipe_section_is_checked_and_stays_out_of_old_hashes(train_base, tmp_path):
    plain = make_recipe(train_base, tmp_path, av=AV)
    same = make_recipe(train_base, tmp_path, av=AV, distributed={"strategy": "ddp", "device_memory_gb": 80})
    sharded = make_recipe(train_base, tmp_path, av=AV, distributed={"strategy": "fsdp"})
    assert plain.config_sha256("av") == same.config_sha256(
        "av"
    )  # defaults and per-machine fields: not hashed
    assert plain.config_sha256("av") != sharded.config_sha256("av")
    with pytest.raises(RecipeError, match=r"distributed\.strategy"):
        make_recipe(train_base, tmp_path, av=AV, distributed={"strategy": "zero3"})
    with pytest.raises(RecipeError, match=r"distributed\.global_batch_size"):
        make_recipe(train_base, tmp_path, av=AV, distributed={"global_batch_size": 0})


def test_qlora_under_fsdp_is_refused_naming_the_fix(train_base, tmp_path, sft_table, monkeypatch):
    from hubkit.train.sft_av import train_av

    monkeypatch.setattr(distributed, "ensure_process_group", lambda *a: None)
    recipe = av_recipe(train_base, tmp_path, sft_table, strategy="fsdp")
    recipe.av.adapter.kind = "qlora"
    with pytest.raises(
        distributed.DistributedError, match=r"qlora cannot be sharded .* strategy ddp for a QLoRA"
    ):
        train_av(recipe, RunOptions(quiet=True))


def _devices_worker(rank: int, port: int, kinds: list[str], errors) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        distributed.check_same_devices(torch.device(kinds[rank]), 2)
        errors.put((rank, None))
    except distributed.DistributedError as exc:
        errors.put((rank, str(exc)))
    finally:
        dist.destroy_process_group()


def test_processes_on_different_kinds_of_device_are_refused():
    """Two real processes (gloo): one says cpu, the other meta; both refuse with the same line."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    mp.start_processes(_devices_worker, args=(port, ["cpu", "meta"], errors), nprocs=2, start_method="spawn")
    got = dict(errors.get(timeout=60) for _ in range(2))
    assert got[0] == got[1] and "rank 0 cpu, rank 1 meta" in got[0]


def test_the_command_line_prints_one_error_line(train_base, tmp_path, sft_table):
    """`hubkit train av` with strategy fsdp outside a launcher: exit 2 and one `error:` line, no traceback."""
    import subprocess
    import sys

    recipe = av_recipe(train_base, tmp_path, sft_table, strategy="fsdp").save(tmp_path / "fsdp.yaml")
    unset = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    done = subprocess.run(
        [sys.executable, "-m", "hubkit.cli", "train", "av", str(recipe), "-q"],
        env={**{k: v for k, v in os.environ.items() if k not in unset}, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "needs a process group" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
