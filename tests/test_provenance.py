import hashlib
import subprocess

import pytest
import torch

from hubkit.provenance import git_state, library_versions, sha256_file, sha256_files


def test_sha256_against_hashlib(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc" * 1_000_000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("hello")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "skip").write_text("x")
    assert sha256_file(tmp_path / "a.bin") == hashlib.sha256(b"abc" * 1_000_000).hexdigest()
    assert sha256_files(tmp_path) == {
        "a.bin": hashlib.sha256(b"abc" * 1_000_000).hexdigest(),
        "sub/b.txt": hashlib.sha256(b"hello").hexdigest(),
    }
    assert sha256_files(tmp_path / "sub" / "b.txt") == {"b.txt": hashlib.sha256(b"hello").hexdigest()}


def test_symlinked_files_are_hashed_by_content(tmp_path):
    # a Hub cache snapshot: links into a blobs folder
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "abc123").write_bytes(b"weights")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "model.safetensors").symlink_to(tmp_path / "blobs" / "abc123")
    assert sha256_files(snap) == {"model.safetensors": hashlib.sha256(b"weights").hexdigest()}


def test_git_state_reports_commit_and_dirty(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    git("commit", "-qm", "init")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "untracked.txt").write_text("out")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "f.py").write_text("x = 2\n")
    assert git_state(tmp_path / "f.py") == {"commit": head, "dirty": True}


def test_library_versions():
    v = library_versions()
    assert v["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert v["python"].count(".") == 2
    assert library_versions(("no-such-dist-hubkit",))["no-such-dist-hubkit"] is None
