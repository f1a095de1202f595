"""Resume refuses damaged checkpoints (file hashes), falls back only when asked, and a run whose loss
becomes non-finite stops with a clear error, keeping its last good checkpoint."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from hubkit import constants as C
from hubkit.checkpoint import verify_checkpoint
from hubkit.cli.train import train
from hubkit.errors import CheckpointError
from hubkit.train import trajectory
from hubkit.train.loop import METRICS_FILE, RunOptions, TrainingDiverged
from hubkit.train.sft_ar import train_ar

from .train_helpers import make_recipe

AR = {"steps": 3, "micro_batch_size": 4, "checkpoint_every": 1, "adapter": {"r": 2}, "optim": {"lr": 1e-2}}


def _flip(path, offset_from_end: int = 64, n: int = 8) -> None:
    """Flip `n` bytes of `path` in place (same size), near its end: inside the tensor data."""
    data = bytearray(path.read_bytes())
    for i in range(n):
        data[-offset_from_end + i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def run3(tmp_path, train_base, sft_table):
    """A finished 3-step AR run with a checkpoint at every step; returns (recipe, run folder)."""
    recipe = make_recipe(train_base, tmp_path / "out", ar={**AR, "data": str(sft_table[0])})
    train_ar(recipe, RunOptions(quiet=True))
    return recipe, tmp_path / "out" / "ar"


def test_every_step_records_and_verifies_its_file_hashes(run3):
    _, run = run3
    for _, folder in trajectory.list_steps(run):
        recorded = json.loads((folder / C.CHECKPOINT_HASHES_FILE).read_text())["files"]
        assert {
            C.ADAPTER_WEIGHTS_FILE,
            C.META_FILE,
            trajectory.TRAINER_STATE_JSON,
            trajectory.TRAINER_STATE_TENSORS,
        } <= set(recorded)
        assert verify_checkpoint(folder) is True


@pytest.mark.parametrize(
    "name",
    [
        C.ADAPTER_WEIGHTS_FILE,
        trajectory.TRAINER_STATE_TENSORS,
        C.VALUE_HEAD_FILE,
        trajectory.TRAINER_STATE_JSON,
    ],
)
def test_resume_refuses_a_flipped_byte_naming_the_file(run3, name):
    recipe, run = run3
    target = run / "step_000003" / name
    _flip(target, offset_from_end=16 if name.endswith(".json") else 64)
    with pytest.raises(CheckpointError, match=rf"{target}: sha256 differs .* use another checkpoint"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))
    assert sorted(p.name for p in run.glob("step_*")) == ["step_000001", "step_000002", "step_000003"]


def test_truncated_and_missing_files_are_named(run3):
    recipe, run = run3
    target = run / "step_000003" / C.ADAPTER_WEIGHTS_FILE
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"{target}: 100 bytes but \d+ were written"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))
    target.unlink()
    with pytest.raises(CheckpointError, match=rf"{target}: missing from the checkpoint"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))


def test_damage_without_recorded_hashes_is_still_one_clear_error(run3):
    """A checkpoint from before hashes were recorded: the loaders' own checks name the file."""
    recipe, run = run3
    step = run / "step_000003"
    (step / C.CHECKPOINT_HASHES_FILE).unlink()
    state = step / trajectory.TRAINER_STATE_JSON
    good = state.read_text()
    with pytest.raises(CheckpointError, match=rf"{step}: no {C.CHECKPOINT_HASHES_FILE}.*--resume-unverified"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))
    state.write_text(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=rf"{state}: not valid JSON .* truncated or corrupt"):
        train_ar(recipe, RunOptions(quiet=True, resume_unverified=True))
    state.write_text(good)
    tensors = step / trajectory.TRAINER_STATE_TENSORS
    tensors.write_bytes(tensors.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=rf"{tensors}: not a readable safetensors file"):
        train_ar(recipe, RunOptions(quiet=True, resume_unverified=True))


def test_nan_in_an_unhashed_adapter_is_refused(run3):
    from safetensors.torch import save_file

    recipe, run = run3
    step = run / "step_000003"
    (step / C.CHECKPOINT_HASHES_FILE).unlink()
    adapter = step / C.ADAPTER_WEIGHTS_FILE
    tensors = load_file(str(adapter))
    first = sorted(tensors)[0]
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, str(adapter))
    with pytest.raises(CheckpointError, match=rf"{adapter}: tensor\(s\) \['{first}'\] hold NaN or inf"):
        train_ar(recipe, RunOptions(quiet=True, resume_unverified=True))


def test_fallback_resumes_from_the_newest_intact_step_and_matches_a_straight_run(
    tmp_path, run3, sft_table, train_base, monkeypatch
):
    recipe, run = run3
    _flip(run / "step_000003" / C.ADAPTER_WEIGHTS_FILE)
    read, read_state = [], trajectory.read_state
    monkeypatch.setattr(
        trajectory,
        "read_state",
        lambda folder, *a, **k: read.append(folder.name) or read_state(folder, *a, **k),
    )
    last = train_ar(recipe, RunOptions(quiet=True, resume_fallback=True))
    assert last.name == "step_000003"
    assert read == ["step_000003", "step_000002"]  # each step read and verified once, the intact one reused
    names = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert names[1:] == ["step_000001", "step_000002", "step_000003"]
    assert len(names) == 4 and names[0].startswith("corrupt_step_000003_")  # kept aside for inspection
    straight = train_ar(
        make_recipe(train_base, tmp_path / "straight", ar={**AR, "data": str(sft_table[0])}),
        RunOptions(quiet=True),
    )
    for name in ("step_000002", "step_000003"):
        a = load_file(str(run / name / C.ADAPTER_WEIGHTS_FILE))
        b = load_file(str(straight.parent / name / C.ADAPTER_WEIGHTS_FILE))
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    steps = [json.loads(line)["step"] for line in (run / METRICS_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_a_partial_last_metrics_line_is_dropped_and_said(run3, caplog):
    recipe, run = run3
    metrics = run / METRICS_FILE
    with open(metrics, "a") as f:
        f.write('{"step": 4, "lo')
    with caplog.at_level("WARNING"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))
    assert "dropped a partial last line" in caplog.text
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]


def test_metrics_rows_lost_before_the_resume_point_are_counted(run3, caplog):
    recipe, run = run3
    metrics = run / METRICS_FILE
    lines = metrics.read_text().splitlines()
    metrics.write_text(lines[0] + "\n")  # steps 2 and 3 lost, the run resumes after step 3
    with caplog.at_level("WARNING"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))
    assert (
        "2 of the 3 steps before the resume point have no metrics record (first missing: step 2)"
        in caplog.text
    )


def test_a_damaged_metrics_line_in_the_middle_is_an_error(run3):
    recipe, run = run3
    metrics = run / METRICS_FILE
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1][:10]
    metrics.write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match=rf"{metrics}: line 2 is not a metrics record"):
        train_ar(recipe, RunOptions(quiet=True, resume=True))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, train_base, sft_table):
    """lr 1e30 is finite (it passes validation) but blows the weights up after one step."""
    ar = {**AR, "steps": 4, "optim": {"lr": 1e30, "max_grad_norm": None}, "data": str(sft_table[0])}
    recipe = make_recipe(train_base, tmp_path / "out", ar=ar)
    with pytest.raises(
        TrainingDiverged, match=r"ar_sft stopped at step 2: .*nan.*last good checkpoint is .*step_000001"
    ):
        train_ar(recipe, RunOptions(quiet=True))
    run = tmp_path / "out" / "ar"
    assert sorted(p.name for p in run.glob("step_*")) == ["step_000001"]
    assert verify_checkpoint(run / "step_000001")
    assert all(
        torch.isfinite(t).all() for t in load_file(str(run / "step_000001" / C.ADAPTER_WEIGHTS_FILE)).values()
    )


def _cli(tmp_path, train_base, sft_table, **ar):
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base_model": str(train_base),
                "layer": 1,
                "output_dir": str(tmp_path / "o"),
                "ar": {**AR, "data": str(sft_table[0]), **ar},
            }
        )
    )
    return CliRunner().invoke(train, ["ar", str(path), "-q"])


def test_cli_divergence_and_damage_exit_non_zero_in_one_line(tmp_path, train_base, sft_table):
    res = _cli(tmp_path, train_base, sft_table, optim={"lr": 1e30, "max_grad_norm": None})
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("error: ar_sft stopped at step 2")
    run = tmp_path / "o" / "ar"
    _flip(run / "step_000001" / C.ADAPTER_WEIGHTS_FILE)
    path = tmp_path / "r.yaml"
    res = CliRunner().invoke(train, ["ar", str(path), "-q", "--resume"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "adapter_model.safetensors: sha256 differs" in res.output
    assert os.listdir(run) and sorted(p.name for p in run.glob("step_*")) == ["step_000001"]


def test_non_finite_weights_are_never_saved():
    """The last guard before a checkpoint is written (a finite step can still overflow a weight)."""
    from hubkit.train.loop import check_finite_weights

    good = torch.nn.Parameter(torch.ones(3))
    check_finite_weights("ar_sft", 4, None, [good])
    bad = torch.nn.Parameter(torch.tensor([1.0, float("inf")]))
    with pytest.raises(
        TrainingDiverged,
        match=r"ar_sft stopped at step 4: the trained weights hold NaN or inf, so step 4 was not saved and the last good checkpoint is step_2",
    ):
        check_finite_weights("ar_sft", 4, "step_2", [good, bad])
