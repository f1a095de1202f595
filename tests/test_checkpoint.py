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
