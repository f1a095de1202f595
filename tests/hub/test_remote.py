"""The one remote-file comparison: a local file against what a repo holds, LFS and regular alike."""

from __future__ import annotations

import hashlib
from pathlib import Path

from huggingface_hub.utils.sha import git_hash

from hubkit.hub import push_folder, remote_files
from hubkit.hub.publishing import hub_api, remote_differences
from hubkit.hub.remote import content_id, difference
from hubkit.localhub import LocalHub, use_endpoint


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_difference_names_what_changed(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\1" * 2048)  # LFS
    (folder / "config.json").write_text('{"d": 8}')  # regular
    with LocalHub(tmp_path / "hub") as hub, use_endpoint(hub.endpoint):
        pushed = push_folder(folder, "hubkit-org/cmp", commit_message="c", endpoint=hub.endpoint)
        api = hub_api(hub.endpoint, None)
        _, remote = remote_files(api, "hubkit-org/cmp", revision=pushed.commit)
        for name in ("model.safetensors", "config.json"):
            assert difference(folder / name, _sha(folder / name), remote[name]) is None
        assert content_id(remote["model.safetensors"]) == _sha(folder / "model.safetensors")
        assert content_id(remote["config.json"]) == git_hash((folder / "config.json").read_bytes())

        (folder / "model.safetensors").write_bytes(b"\2" * 2048)
        (folder / "config.json").write_text('{"d": 9}')
        (folder / "new.txt").write_text("new")
        assert difference(
            folder / "model.safetensors", _sha(folder / "model.safetensors"), remote["model.safetensors"]
        ).startswith("sha256 ")
        assert (
            difference(folder / "config.json", _sha(folder / "config.json"), remote["config.json"])
            == "other content on the Hub"
        )
        assert difference(folder / "new.txt", _sha(folder / "new.txt"), None) == "missing on the Hub"
        files = {p: _sha(folder / p) for p in ("model.safetensors", "new.txt")}
        bad = remote_differences(api, "hubkit-org/cmp", "model", pushed.commit, folder, files)
        assert bad == [
            "config.json (not in the bundle)",
            "model.safetensors (sha256 " + remote["model.safetensors"].lfs.sha256[:12] + "… on the Hub)",
            "new.txt (missing on the Hub)",
        ]
