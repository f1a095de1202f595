"""A pair pushed to the local Hub endpoint with the real client loads back by repo id, tag and
subfolder, with the same numbers as the local checkpoint."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub import HfApi

from hubkit import NLAPair
from hubkit.errors import CheckpointError
from hubkit.hub import resolve
from hubkit.localhub import LocalHub, use_endpoint
from hubkit.testing import write_adapter_pair

TOKEN = "hf_local_test_token"


def test_push_and_pull_pair_by_tag_and_subfolder(tmp_path, tiny_base_dir, tiny_llama, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    av_dir, ar_dir = write_adapter_pair(tmp_path / "local", tiny_base_dir)
    with LocalHub(tmp_path / "hub") as hub, use_endpoint(hub.endpoint, token=TOKEN):
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        for name, folder in (("av", av_dir), ("ar", ar_dir)):
            api.create_repo(f"lab/tiny-{name}")
            api.upload_folder(repo_id=f"lab/tiny-{name}", folder_path=str(folder), path_in_repo="step_000010")
            api.create_tag(f"lab/tiny-{name}", tag="v0.1")
            # a later commit on main must not leak into the tagged revision
            api.upload_file(
                path_or_fileobj=b"later", path_in_repo="step_000010/NOTE.txt", repo_id=f"lab/tiny-{name}"
            )
        remote = NLAPair.from_pretrained(
            av="lab/tiny-av", ar="lab/tiny-ar", revision="v0.1", subfolder="step_000010"
        )
        tagged = resolve("lab/tiny-av", revision="v0.1", subfolder="step_000010")
        assert not (tagged / "NOTE.txt").exists(), "the tag must pin the pre-NOTE commit"
        assert (resolve("lab/tiny-av", subfolder="step_000010") / "NOTE.txt").read_bytes() == b"later"
        with pytest.raises(CheckpointError, match="revision"):
            NLAPair.from_pretrained(
                av="lab/tiny-av", ar="lab/tiny-ar", revision="v9", subfolder="step_000010"
            )
    local = NLAPair.from_pretrained(av=av_dir, ar=ar_dir)
    v = torch.randn(3, tiny_llama.d_model)
    a, b = local.round_trip(v, max_new_tokens=10), remote.round_trip(v, max_new_tokens=10)
    assert a.explanations == b.explanations
    torch.testing.assert_close(a.reconstructions, b.reconstructions)
