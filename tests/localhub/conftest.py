"""A local Hub with a token file: alice (write, org lab), alice's read-only token, bob (write)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, constants

from hubkit.localhub import Limits, LocalHub, use_endpoint

ALICE = "hf_alice_write_5b2c0f7e9d1a"
ALICE_RO = "hf_alice_read_only_77c3e1"
BOB = "hf_bob_write_0c4d9e2f1a8b"
TOKENS = {
    ALICE: {"user": "alice", "write": True, "orgs": ["lab"]},
    ALICE_RO: {"user": "alice", "write": False},
    BOB: {"user": "bob", "write": True},
}
PRIVATE, PUBLIC, SHARED = "alice/private", "alice/public", "lab/shared"
SECRET_BYTES = b"private weights " * 64


@dataclass
class Site:
    """A running hub with three repos of alice's (one private, one in her org)."""

    hub: LocalHub
    token_file: Path

    @property
    def endpoint(self) -> str:
        return self.hub.endpoint

    def api(self, token: str | bool | None) -> HfApi:
        return HfApi(endpoint=self.hub.endpoint, token=token)


def write_token_file(path: Path, tokens: dict = TOKENS) -> Path:
    path.write_text(yaml.safe_dump({"tokens": tokens}))
    path.chmod(0o600)
    return path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    token_file = write_token_file(tmp_path / "tokens.yaml")
    limits = Limits(upload_ttl=30.0, max_body=4 * 1024 * 1024)
    with LocalHub(tmp_path / "hub", token_file=token_file, limits=limits) as hub, use_endpoint(hub.endpoint):
        alice = HfApi(endpoint=hub.endpoint, token=ALICE)
        for repo, private in ((PRIVATE, True), (PUBLIC, False), (SHARED, False)):
            alice.create_repo(repo, private=private)
            ops = [
                CommitOperationAdd("config.json", b'{"d": 8}\n'),
                CommitOperationAdd("w/model.safetensors", SECRET_BYTES + repo.encode()),
            ]
            alice.create_commit(repo, ops, commit_message="weights")
            alice.create_tag(repo, tag="v1")
            alice.create_branch(repo, branch="dev")
        yield Site(hub, token_file)
