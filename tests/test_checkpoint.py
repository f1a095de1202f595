"""Checkpoint folders record the sha256 of each file when written; `verify_checkpoint` finds any change."""

from __future__ import annotations

import hashlib
import json

import pytest

from hubkit import constants as C
from hubkit.checkpoint import verify_checkpoint, write_checkpoint, write_file_hashes
from hubkit.errors import CheckpointError


def test_written_checkpoints_carry_hashes_of_every_file(tmp_path):
    from hubkit.testing import make_tiny_model, tiny_metas

    tiny = make_tiny_model("llama", d_model=32, n_layers=2, seed=0)
    folder = write_checkpoint(tmp_path / "ck", tiny.model, tiny.tokenizer, tiny_metas(tiny)[0])
    recorded = json.loads((folder / C.CHECKPOINT_HASHES_FILE).read_text())["files"]
    on_disk = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert sorted(recorded) == on_disk and C.META_FILE in recorded
    for name, entry in recorded.items():  # checked against an independent hash
        assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert verify_checkpoint(folder)


def test_verify_names_the_changed_truncated_or_missing_file(tmp_path):
    folder = tmp_path / "ck"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"0123456789")
    (folder / "sub" / "b.json").write_text('{"x": 1}')
    write_file_hashes(folder)
    assert verify_checkpoint(folder)
    (folder / "a.bin").write_bytes(b"0123456780")
    with pytest.raises(CheckpointError, match=r"a.bin: sha256 differs"):
        verify_checkpoint(folder)
    (folder / "a.bin").write_bytes(b"01234")
    with pytest.raises(CheckpointError, match=r"a.bin: 5 bytes but 10 were written"):
        verify_checkpoint(folder)
    (folder / "a.bin").write_bytes(b"0123456789")
    (folder / "sub" / "b.json").unlink()
    with pytest.raises(CheckpointError, match=r"sub/b.json: missing from the checkpoint"):
        verify_checkpoint(folder)
    (folder / C.CHECKPOINT_HASHES_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint hash file"):
        verify_checkpoint(folder)


def test_folders_without_hashes_are_unverified_not_refused_unless_required(tmp_path):
    assert verify_checkpoint(tmp_path) is False
    with pytest.raises(CheckpointError, match="cannot be verified"):
        verify_checkpoint(tmp_path, required=True)


def test_load_time_check_uses_the_hash_file_then_provenance_and_warns_once_without_either(tmp_path, caplog):
    import logging

    from hubkit.checkpoint import NO_VERIFY_ENV, verify_on_load, write_file_hashes

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / C.META_FILE).write_text("role: av\nhubkit:\n  schema: hubkit.nla/1\n")
    write_file_hashes(folder)
    assert verify_on_load(folder) is True
    (folder / C.META_FILE).write_text("role: av\nhubkit:\n  schema: hubkit.nla/1\n  base_model: /my/copy\n")
    assert verify_on_load(folder) is True  # the meta is checked by its own schema; a user may edit it
    (folder / "adapter_model.safetensors").write_bytes(b"weightz")
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: sha256 differs"):
        verify_on_load(folder)
    assert verify_on_load(folder, verify=False) is False
    # a released folder ships provenance.json instead of the hash file
    (folder / C.CHECKPOINT_HASHES_FILE).unlink()
    sha = hashlib.sha256(b"weights").hexdigest()
    (folder / C.PROVENANCE_FILE).write_text(
        json.dumps({"files": {"adapter_model.safetensors": {"sha256": sha}}})
    )
    with pytest.raises(
        CheckpointError,
        match=rf"adapter_model.safetensors: sha256 differs from the one recorded in {C.PROVENANCE_FILE}",
    ):
        verify_on_load(folder)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    assert verify_on_load(folder) is True
    # neither: a warning, once per folder
    (folder / C.PROVENANCE_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="hubkit.checkpoint"):
        assert verify_on_load(folder) is False
        assert verify_on_load(folder) is False
    assert sum("loaded unverified" in r.getMessage() for r in caplog.records) == 1
    (folder / "adapter_model.safetensors").write_bytes(b"other")
    write_file_hashes(folder)
    (folder / "adapter_model.safetensors").write_bytes(b"broken")
    import os

    os.environ[NO_VERIFY_ENV] = "1"
    try:
        assert verify_on_load(folder) is False  # skipped for huge checkpoints
    finally:
        del os.environ[NO_VERIFY_ENV]


def test_a_trajectory_step_is_checked_against_its_repos_provenance(tmp_path):
    from hubkit.checkpoint import verify_on_load

    step = tmp_path / "repo" / "step_000002"
    step.mkdir(parents=True)
    (step / "adapter_model.safetensors").write_bytes(b"step two")
    good = hashlib.sha256(b"step two").hexdigest()
    files = {"step_000002/adapter_model.safetensors": {"sha256": good}, "README.md": {"sha256": "0" * 64}}
    (tmp_path / "repo" / C.PROVENANCE_FILE).write_text(json.dumps({"files": files}))
    assert verify_on_load(step) is True
    (step / "adapter_model.safetensors").write_bytes(b"step 2")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        verify_on_load(step)
