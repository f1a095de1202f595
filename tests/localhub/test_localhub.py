"""hubkit's local Hub, exercised through the real clients (huggingface_hub, transformers, peft, datasets).

Every test talks HTTP to a LocalHub on 127.0.0.1 under ``tmp_path``; nothing is mocked and nothing
leaves the machine. ``use_endpoint`` points the libraries' module-level defaults at the server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    constants,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info
from huggingface_hub.utils import get_session
from huggingface_hub.utils.sha import git_hash

from hubkit.localhub import LocalHub, hub_env, use_endpoint
from hubkit.localhub.objects import upload_mode

TOKEN = "hf_localhub_test_token"
REPO = "hubkit-org/weights"
WEIGHTS = bytes(range(256)) * 1024  # 256 KiB, binary: LFS by extension and by content
CONFIG = b'{"d_model": 64}\n'


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A running local Hub that the libraries' defaults point at, with a throwaway HF cache."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with LocalHub(tmp_path / "hub") as running, use_endpoint(running.endpoint, token=TOKEN):
        yield running


@pytest.fixture
def api(hub: LocalHub) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=TOKEN)


def _push_weights(api: HfApi, weights: bytes = WEIGHTS, message: str = "add weights") -> str:
    api.create_repo(REPO, exist_ok=True)
    ops = [
        CommitOperationAdd("notes/config.json", CONFIG),
        CommitOperationAdd("w/model.safetensors", weights),
    ]
    return api.create_commit(REPO, ops, commit_message=message).oid


def _state(api: HfApi, repo: str = REPO) -> tuple[list[str], dict[str, str]]:
    """Commit ids and {path: blob id} of main: what must not move when a push fails."""
    commits = [c.commit_id for c in api.list_repo_commits(repo)]
    tree = {f.path: f.blob_id for f in api.list_repo_tree(repo, recursive=True) if hasattr(f, "blob_id")}
    return commits, tree


# --------------------------------------------------------------------------- huggingface_hub


def test_one_commit_lists_tags_branches_and_downloads(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    first = _push_weights(api)

    commits = api.list_repo_commits(REPO)
    assert [c.title for c in commits] == ["add weights", "initial commit"]
    assert commits[0].commit_id == first

    files = {f.path: f for f in api.list_repo_tree(REPO, recursive=True) if hasattr(f, "blob_id")}
    assert set(files) == {".gitattributes", "notes/config.json", "w/model.safetensors"}
    assert files["w/model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert files["w/model.safetensors"].size == len(WEIGHTS)
    assert files["notes/config.json"].lfs is None
    assert files["notes/config.json"].blob_id == git_hash(CONFIG)

    info = api.get_paths_info(REPO, ["notes/config.json", "w", "no/such/file"])
    assert [(type(i).__name__, i.path) for i in info] == [
        ("RepoFile", "notes/config.json"),
        ("RepoFolder", "w"),
    ]

    api.create_tag(REPO, tag="v1", tag_message="first release")
    api.create_branch(REPO, branch="dev")
    refs = api.list_repo_refs(REPO)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": first}
    assert {b.name for b in refs.branches} == {"main", "dev"}

    second = _push_weights(api, weights=WEIGHTS[::-1], message="retrain")  # config.json unchanged
    assert api.model_info(REPO).sha == second
    assert api.model_info(REPO, revision="v1").sha == first
    last = {f.path: f.last_commit.oid for f in api.list_repo_tree(REPO, recursive=True, expand=True)}
    assert last == {
        ".gitattributes": commits[1].commit_id,
        "notes": first,
        "notes/config.json": first,
        "w": second,
        "w/model.safetensors": second,
    }
    api.delete_branch(REPO, branch="dev")
    assert [b.name for b in api.list_repo_refs(REPO).branches] == ["main"]

    cache = tmp_path / "dl"
    tagged = hf_hub_download(REPO, "model.safetensors", subfolder="w", revision="v1", cache_dir=cache)
    latest = hf_hub_download(REPO, "model.safetensors", subfolder="w", cache_dir=cache)
    by_sha = hf_hub_download(REPO, "w/model.safetensors", revision=first, cache_dir=cache)
    assert Path(tagged).read_bytes() == Path(by_sha).read_bytes() == WEIGHTS
    assert Path(latest).read_bytes() == WEIGHTS[::-1]

    snapshot = Path(snapshot_download(REPO, allow_patterns=["notes/*"], cache_dir=tmp_path / "snap"))
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == [
        "notes/config.json"
    ]
    assert (snapshot / "notes/config.json").read_bytes() == CONFIG


def test_file_metadata_headers_and_range_reads(api: HfApi, hub: LocalHub) -> None:
    commit = _push_weights(api)

    lfs = get_hf_file_metadata(hf_hub_url(REPO, "w/model.safetensors", endpoint=hub.endpoint))
    assert (lfs.commit_hash, lfs.etag, lfs.size) == (
        commit,
        hashlib.sha256(WEIGHTS).hexdigest(),
        len(WEIGHTS),
    )
    regular = get_hf_file_metadata(hf_hub_url(REPO, "notes/config.json", endpoint=hub.endpoint))
    assert (regular.etag, regular.size) == (git_hash(CONFIG), len(CONFIG))

    url = hf_hub_url(REPO, "w/model.safetensors", endpoint=hub.endpoint)
    partial = get_session().get(url, headers={"Range": "bytes=1000-1099"})
    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 1000-1099/{len(WEIGHTS)}"
    assert partial.content == WEIGHTS[1000:1100]
    assert get_session().get(url, headers={"Range": f"bytes={len(WEIGHTS)}-"}).status_code == 416

    fs = HfFileSystem(endpoint=hub.endpoint, token=TOKEN, skip_instance_cache=True)
    assert fs.cat_file(f"{REPO}/w/model.safetensors", start=5000, end=5100) == WEIGHTS[5000:5100]


def test_reuploading_stored_lfs_content_sends_no_bytes(api: HfApi, hub: LocalHub) -> None:
    _push_weights(api)
    received, uploads = hub.stats.lfs_bytes_received, hub.stats.lfs_uploads
    assert received == len(WEIGHTS)

    same = CommitOperationAdd("w/same.safetensors", WEIGHTS)
    copy = CommitOperationCopy("w/model.safetensors", "w/copy.safetensors")  # server-side, by oid
    api.create_commit(REPO, [same, copy], commit_message="same bytes, new paths")
    assert (hub.stats.lfs_bytes_received, hub.stats.lfs_uploads) == (received, uploads)
    for info in api.get_paths_info(REPO, ["w/same.safetensors", "w/copy.safetensors"]):
        assert info.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()

    commits_before = len(api.list_repo_commits(REPO))
    _push_weights(api, message="identical push")  # unchanged files: the client skips the commit
    assert len(api.list_repo_commits(REPO)) == commits_before
    assert hub.stats.lfs_bytes_received == received


def test_delete_file_and_folder(api: HfApi) -> None:
    _push_weights(api)
    api.create_commit(REPO, [CommitOperationDelete("notes/config.json")], commit_message="rm file")
    assert {f.path for f in api.list_repo_tree(REPO, recursive=True)} == {
        ".gitattributes",
        "w",
        "w/model.safetensors",
    }
    api.create_commit(REPO, [CommitOperationDelete("w/")], commit_message="rm folder")
    assert [f.path for f in api.list_repo_tree(REPO, recursive=True)] == [".gitattributes"]

    before = _state(api)
    ops = [CommitOperationAdd("new.txt", b"x"), CommitOperationDelete("missing.txt")]
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, ops, commit_message="half valid")
    assert _state(api) == before  # the valid half was not applied either


def test_errors_map_to_client_exceptions(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("hubkit-org/absent")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info(REPO)  # exists as a model only
    _push_weights(api)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "notes/config.json", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "notes/absent.json", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="no-such-folder"))
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(REPO, tag="never-made")

    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO)
    assert conflict.value.response.status_code == 409
    api.create_repo(REPO, exist_ok=True)

    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="x", parent_commit="0" * 40
        )
    assert stale.value.response.status_code == 412

    anonymous = get_session().post(f"{hub.endpoint}/api/repos/create", json={"name": "sneaky"})
    assert anonymous.status_code == 401
    assert not api.repo_exists("hubkit-local/sneaky")
    with pytest.raises(HfHubHTTPError, match="needs a bearer token") as unauthenticated:
        HfApi(endpoint=hub.endpoint, token=False).create_tag(REPO, tag="v0")
    assert unauthenticated.value.response.status_code == 401
    assert not isinstance(unauthenticated.value, RepositoryNotFoundError)


def test_whoami_and_repo_types(api: HfApi) -> None:
    assert api.whoami()["name"] == "hubkit-local"
    url = api.create_repo("data", repo_type="dataset")
    assert url.repo_id == "hubkit-local/data"  # a bare name lands in the user's namespace, as on the Hub
    api.create_repo("hubkit-org/demo", repo_type="space", space_sdk="static")
    api.upload_file(
        path_or_fileobj=b"<html/>", path_in_repo="index.html", repo_id="hubkit-org/demo", repo_type="space"
    )
    assert api.space_info("hubkit-org/demo").sdk == "static"
    assert [s.rfilename for s in api.dataset_info("hubkit-local/data").siblings] == [".gitattributes"]
    api.delete_repo("hubkit-local/data", repo_type="dataset")
    assert not api.repo_exists("hubkit-local/data", repo_type="dataset")


def test_upload_mode_follows_the_hub_rules() -> None:
    assert upload_mode("notes.txt", 100, b"plain text") == "regular"
    assert upload_mode("w/model.safetensors", 100, b"{}") == "lfs"
    assert upload_mode("data/train.parquet", 100, b"PAR1") == "lfs"
    assert upload_mode("blob.dat", 100, b"\x00\x01") == "lfs"
    assert upload_mode("huge.txt", 10 * 1024 * 1024, b"text") == "lfs"


# --------------------------------------------------------------------------- transformers, peft, datasets


def test_transformers_push_and_from_pretrained(hub: LocalHub, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hubkit.testing import make_tiny_model

    tiny = make_tiny_model()
    tiny.model.push_to_hub("hubkit-org/tiny")
    tiny.tokenizer.push_to_hub("hubkit-org/tiny")

    loaded = AutoModelForCausalLM.from_pretrained("hubkit-org/tiny", cache_dir=tmp_path / "c")
    expected, got = tiny.model.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    tokenizer = AutoTokenizer.from_pretrained("hubkit-org/tiny", cache_dir=tmp_path / "c")
    assert tokenizer("the cat").input_ids == tiny.tokenizer("the cat").input_ids


def test_peft_adapter_push_and_load(hub: LocalHub, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

    from hubkit.testing import make_tiny_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = get_peft_model(make_tiny_model().model, config)
    adapted.push_to_hub("hubkit-org/tiny-lora")

    loaded = PeftModel.from_pretrained(
        make_tiny_model().model, "hubkit-org/tiny-lora", cache_dir=tmp_path / "c"
    )
    expected, got = get_peft_model_state_dict(adapted), get_peft_model_state_dict(loaded)
    assert expected.keys() == got.keys() and len(expected) > 0
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_datasets_push_and_load(hub: LocalHub, tmp_path: Path) -> None:
    from datasets import Dataset, load_dataset

    rows = {"text": ["a cat", "a dog", "a city"], "layer": [3, 3, 5]}
    Dataset.from_dict(rows).push_to_hub("hubkit-org/acts")
    loaded = load_dataset("hubkit-org/acts", split="train", cache_dir=str(tmp_path / "ds-cache"))
    assert loaded.to_dict() == rows


# --------------------------------------------------------------------------- persistence and failures


def test_data_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    with LocalHub(root) as first, use_endpoint(first.endpoint, token=TOKEN):
        api = HfApi(endpoint=first.endpoint, token=TOKEN)
        commit = _push_weights(api)
        api.create_tag(REPO, tag="v1")
    with LocalHub(root) as second, use_endpoint(second.endpoint, token=TOKEN):
        api = HfApi(endpoint=second.endpoint, token=TOKEN)
        assert api.model_info(REPO, revision="v1").sha == commit
        path = hf_hub_download(
            REPO, "w/model.safetensors", endpoint=second.endpoint, cache_dir=tmp_path / "c"
        )
        assert Path(path).read_bytes() == WEIGHTS


def test_interrupted_lfs_upload_leaves_repo_unchanged(api: HfApi, hub: LocalHub) -> None:
    _push_weights(api)
    before = _state(api)
    new_weights = os.urandom(300_000)

    hub.faults.inject("lfs_upload", status=507, after_bytes=100_000)  # 507: not retried by the client
    with pytest.raises(RuntimeError, match="uploading 'w/model.safetensors'"):
        _push_weights(api, weights=new_weights, message="retrain")
    assert hub.faults.pending == 0
    assert _state(api) == before
    assert hub.store.lfs_size(hashlib.sha256(new_weights).hexdigest()) is None  # partial bytes discarded

    _push_weights(api, weights=new_weights, message="retrain")
    commits, tree = _state(api)
    assert commits[1:] == before[0] and tree != before[1]


def test_failed_commit_is_retried_without_resending_bytes(api: HfApi, hub: LocalHub) -> None:
    _push_weights(api)
    before = _state(api)
    new_weights = os.urandom(200_000)

    hub.faults.inject("commit", status=500)
    with pytest.raises(HfHubHTTPError):
        _push_weights(api, weights=new_weights, message="retrain")
    assert _state(api) == before
    received = hub.stats.lfs_bytes_received

    _push_weights(api, weights=new_weights, message="retrain")
    assert hub.stats.lfs_bytes_received == received  # the LFS object was already there
    assert api.list_repo_commits(REPO)[0].title == "retrain"


def test_dropped_connection_is_retried_by_the_client(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    hub.faults.inject("lfs_upload", drop=True, after_bytes=1000)
    _push_weights(api)  # huggingface_hub retries the PUT once, after 1 s
    assert hub.faults.pending == 0
    assert hub.stats.lfs_uploads == 2
    path = hf_hub_download(REPO, "w/model.safetensors", cache_dir=tmp_path / "c")
    assert Path(path).read_bytes() == WEIGHTS


def test_commit_pointing_at_unknown_lfs_object_is_rejected(api: HfApi, hub: LocalHub) -> None:
    _push_weights(api)
    before = _state(api)
    ghost = CommitOperationAdd("w/ghost.safetensors", b"never uploaded " * 100)
    ghost._upload_mode, ghost._is_uploaded = "lfs", True  # a client that skipped the LFS upload
    ops = [CommitOperationAdd("notes/extra.txt", b"valid"), ghost]
    with pytest.raises(BadRequestError, match="never uploaded"):
        api.create_commit(REPO, ops, commit_message="ghost")
    assert _state(api) == before


def test_lfs_upload_with_wrong_bytes_is_rejected(api: HfApi, hub: LocalHub) -> None:
    api.create_repo(REPO)
    claimed = b"what the client announced"
    actions, errors, _ = post_lfs_batch_info(
        [UploadInfo.from_bytes(claimed)], token=TOKEN, repo_type="model", repo_id=REPO, endpoint=hub.endpoint
    )
    assert errors == []
    response = get_session().put(actions[0]["actions"]["upload"]["href"], content=b"something else entirely!")
    assert response.status_code == 400
    assert "sha256" in response.json()["error"]
    assert hub.store.lfs_size(hashlib.sha256(claimed).hexdigest()) is None


# --------------------------------------------------------------------------- configuration helpers


def test_use_endpoint_restores_the_defaults(tmp_path: Path) -> None:
    from huggingface_hub import hf_api

    before = (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, constants.HF_HUB_DISABLE_XET)
    before_api, before_token = hf_api.api.endpoint, os.environ.get("HF_TOKEN")
    with LocalHub(tmp_path) as hub, use_endpoint(hub.endpoint, token=TOKEN):
        assert constants.ENDPOINT == hf_api.api.endpoint == hub.endpoint
        assert constants.HF_HUB_DISABLE_XET is True
        assert os.environ["HF_TOKEN"] == TOKEN
    assert (constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE, constants.HF_HUB_DISABLE_XET) == before
    assert (hf_api.api.endpoint, os.environ.get("HF_TOKEN")) == (before_api, before_token)


def test_hub_env_configures_a_fresh_process(api: HfApi, hub: LocalHub, tmp_path: Path) -> None:
    _push_weights(api)
    env = {**os.environ, **hub_env(hub.endpoint, token=TOKEN), "HF_HOME": str(tmp_path / "home")}
    code = f"from huggingface_hub import hf_hub_download; print(open(hf_hub_download({REPO!r}, 'notes/config.json')).read())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == CONFIG.decode().strip()


def test_only_loopback_addresses_are_served(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LocalHub(tmp_path, host="0.0.0.0")
    with LocalHub(tmp_path, host="localhost") as hub:
        assert hub.endpoint.startswith("http://127.0.0.1:")
    assert not hub.running
