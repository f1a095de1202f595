"""Access control of the local Hub, through huggingface_hub and through raw sockets.

Unknown tokens get 401; private repos are invisible to anyone but their owners; writes need a
write token of the namespace's user or org; nothing a refused request sent changes the store.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hubkit.localhub import LocalHub, use_endpoint
from hubkit.localhub.access import LOCAL_USER

from . import rawhttp
from .conftest import ALICE, ALICE_RO, BOB, PRIVATE, PUBLIC, SECRET_BYTES, SHARED, Site

NOBODY = "hf_unknown_token_3e8a1f0c"


def _state(site: Site) -> dict[str, object]:
    """Every repo's refs and history as the owner sees them: what a refused request must not move."""
    alice = site.api(ALICE)
    out: dict[str, object] = {}
    for repo in (PRIVATE, PUBLIC, SHARED):
        refs = alice.list_repo_refs(repo)
        out[repo] = (
            sorted((b.name, b.target_commit) for b in refs.branches),
            sorted((t.name, t.target_commit) for t in refs.tags),
            [c.commit_id for c in alice.list_repo_commits(repo)],
        )
    out["repos"] = sorted(
        p.relative_to(site.hub.root).as_posix() for p in (site.hub.root / "repos").glob("*/*/*")
    )
    return out


# --------------------------------------------------------------------------- huggingface_hub


@pytest.mark.parametrize("token", [False, BOB, NOBODY], ids=["anonymous", "other-user", "unknown-token"])
def test_a_private_repo_is_invisible_to_others(site: Site, token: str | bool, tmp_path: Path) -> None:
    api = site.api(token)
    expected = HfHubHTTPError if token == NOBODY else RepositoryNotFoundError
    reads = [
        lambda: api.model_info(PRIVATE),
        lambda: api.model_info(PRIVATE, revision="v1"),
        lambda: list(api.list_repo_tree(PRIVATE, recursive=True)),
        lambda: api.get_paths_info(PRIVATE, ["config.json"]),
        lambda: api.list_repo_refs(PRIVATE),
        lambda: api.list_repo_commits(PRIVATE),
        lambda: hf_hub_download(
            PRIVATE, "w/model.safetensors", endpoint=site.endpoint, token=token, cache_dir=tmp_path / "c"
        ),
    ]
    for read in reads:
        with pytest.raises(expected) as refused:
            read()
        assert refused.value.response.status_code == (401 if token == NOBODY else 404)
    assert not list(tmp_path.rglob("*.safetensors"))
    if token != NOBODY:  # public repos stay readable by anyone with a valid token or none
        assert api.model_info(PUBLIC).sha == site.api(ALICE).model_info(PUBLIC).sha


def test_owners_read_their_private_repo_with_any_of_their_tokens(site: Site, tmp_path: Path) -> None:
    for token in (ALICE, ALICE_RO):
        assert site.api(token).model_info(PRIVATE).private is True
        path = hf_hub_download(
            PRIVATE, "w/model.safetensors", endpoint=site.endpoint, token=token, cache_dir=tmp_path / token
        )
        assert Path(path).read_bytes() == SECRET_BYTES + PRIVATE.encode()


def _all_refused(api: HfApi, repo: str, match: str, *more: Callable[[], object]) -> None:
    """Every kind of write to `repo` (and `more`) is refused with 403 and a message matching `match`."""
    writes = [
        lambda: api.create_commit(repo, [CommitOperationAdd("x.txt", b"x")], commit_message="x"),
        lambda: api.upload_file(path_or_fileobj=b"\0" * 100, path_in_repo="x.bin", repo_id=repo),
        lambda: api.create_tag(repo, tag="v2"),
        lambda: api.delete_tag(repo, tag="v1"),
        lambda: api.create_branch(repo, branch="b2"),
        lambda: api.delete_branch(repo, branch="dev"),
        lambda: api.delete_repo(repo),
        *more,
    ]
    for write in writes:
        with pytest.raises(HfHubHTTPError, match=match) as refused:
            write()
        assert refused.value.response.status_code == 403


def test_a_read_only_token_cannot_write(site: Site) -> None:
    before = _state(site)
    ro = site.api(ALICE_RO)
    _all_refused(ro, PUBLIC, "read-only", lambda: ro.create_repo("alice/new"), lambda: ro.delete_repo(PRIVATE))
    assert _state(site) == before


@pytest.mark.parametrize("repo", [PUBLIC, SHARED])
def test_another_users_token_cannot_write_to_your_namespace(site: Site, repo: str) -> None:
    before = _state(site)
    bob = site.api(BOB)
    _all_refused(bob, repo, "may not write", lambda: bob.create_repo(repo.split("/")[0] + "/bobs"))
    for write in (lambda: bob.delete_repo(PRIVATE), lambda: bob.create_tag(PRIVATE, tag="v2")):
        with pytest.raises(RepositoryNotFoundError):  # someone else's private repo does not exist for bob
            write()
    assert _state(site) == before
    bob.create_repo("bob/own")  # bob's own namespace is his
    assert bob.model_info("bob/own").author == "bob"


def test_org_members_write_to_the_org(site: Site) -> None:
    alice = site.api(ALICE)
    oid = alice.create_commit(SHARED, [CommitOperationAdd("notes.txt", b"hi")], commit_message="notes").oid
    assert alice.list_repo_commits(SHARED)[0].commit_id == oid
    assert alice.list_repo_commits(SHARED)[0].authors == ["alice"]


def test_whoami_answers_for_the_token(site: Site) -> None:
    assert site.api(ALICE).whoami()["name"] == "alice"
    assert [o["name"] for o in site.api(ALICE).whoami()["orgs"]] == ["lab"]
    assert site.api(ALICE_RO).whoami()["auth"]["accessToken"]["role"] == "read"
    assert site.api(BOB).whoami()["name"] == "bob"
    with pytest.raises(HfHubHTTPError) as refused:
        site.api(NOBODY).whoami()
    assert refused.value.response.status_code == 401
    assert rawhttp.request(site.endpoint, "GET", "/api/whoami-v2").status == 401  # no token at all


# --------------------------------------------------------------------------- raw sockets

#: (what, method, path, token, body, expected status): each must be refused and change nothing.
PROBES = [
    ("unknown token reads a public repo", "GET", f"/api/models/{PUBLIC}", NOBODY, None, 401),
    ("unknown token on whoami", "GET", "/api/whoami-v2", NOBODY, None, 401),
    ("non-bearer scheme", "GET", "/api/whoami-v2", None, None, 401),
    ("anonymous whoami", "GET", "/api/whoami-v2", None, None, 401),
    ("anonymous reads private info", "GET", f"/api/models/{PRIVATE}", None, None, 404),
    ("anonymous reads private tree", "GET", f"/api/models/{PRIVATE}/tree/main", None, None, 404),
    ("anonymous reads private file", "GET", f"/{PRIVATE}/resolve/main/config.json", None, None, 404),
    ("anonymous heads private file", "HEAD", f"/{PRIVATE}/resolve/v1/config.json", None, None, 404),
    ("anonymous paths-info private", "POST", f"/api/models/{PRIVATE}/paths-info/main", None, {"paths": ["w"]}, 404),
    ("bob reads private info", "GET", f"/api/models/{PRIVATE}/revision/main", BOB, None, 404),
    ("bob reads private refs", "GET", f"/api/models/{PRIVATE}/refs", BOB, None, 404),
    ("bob reads private commits", "GET", f"/api/models/{PRIVATE}/commits/main", BOB, None, 404),
    ("bob downloads private file", "GET", f"/{PRIVATE}/resolve/main/w/model.safetensors", BOB, None, 404),
    ("anonymous creates a repo", "POST", "/api/repos/create", None, {"name": "sneaky"}, 401),
    ("unknown token creates a repo", "POST", "/api/repos/create", NOBODY, {"name": "sneaky"}, 401),
    ("bob creates in alice's namespace", "POST", "/api/repos/create", BOB, {"name": "x", "organization": "alice"}, 403),
    ("bob creates in alice's org", "POST", "/api/repos/create", BOB, {"name": "x", "organization": "lab"}, 403),
    ("read-only token creates", "POST", "/api/repos/create", ALICE_RO, {"name": "x"}, 403),
    ("anonymous deletes", "DELETE", "/api/repos/delete", None, {"name": "public", "organization": "alice"}, 401),
    ("bob deletes alice's repo", "DELETE", "/api/repos/delete", BOB, {"name": "public", "organization": "alice"}, 403),
    ("bob deletes alice's private", "DELETE", "/api/repos/delete", BOB, {"name": "private", "organization": "alice"}, 404),
    ("anonymous tags", "POST", f"/api/models/{PUBLIC}/tag/main", None, {"tag": "x"}, 401),
    ("bob tags", "POST", f"/api/models/{PUBLIC}/tag/main", BOB, {"tag": "x"}, 403),
    ("bob deletes a tag", "DELETE", f"/api/models/{PUBLIC}/tag/v1", BOB, None, 403),
    ("bob branches", "POST", f"/api/models/{PUBLIC}/branch/b2", BOB, {}, 403),
    ("bob deletes a branch", "DELETE", f"/api/models/{PUBLIC}/branch/dev", BOB, None, 403),
    ("bob tags alice's private", "POST", f"/api/models/{PRIVATE}/tag/main", BOB, {"tag": "x"}, 404),
    ("anonymous preupload", "POST", f"/api/models/{PUBLIC}/preupload/main", None, {"files": []}, 401),
    ("bob preupload", "POST", f"/api/models/{PUBLIC}/preupload/main", BOB, {"files": []}, 403),
    ("anonymous commit", "POST", f"/api/models/{PUBLIC}/commit/main", None, b'{"key":"header","value":{"summary":"x"}}', 401),
    ("bob commits", "POST", f"/api/models/{PUBLIC}/commit/main", BOB, b'{"key":"header","value":{"summary":"x"}}', 403),
    ("read-only commit", "POST", f"/api/models/{PUBLIC}/commit/main", ALICE_RO, b'{"key":"header","value":{"summary":"x"}}', 403),
    ("anonymous LFS batch", "POST", f"/{PUBLIC}.git/info/lfs/objects/batch", None, {"operation": "upload", "objects": []}, 401),
    ("bob LFS batch", "POST", f"/{PUBLIC}.git/info/lfs/objects/batch", BOB, {"operation": "upload", "objects": []}, 403),
    ("bob LFS batch on private", "POST", f"/{PRIVATE}.git/info/lfs/objects/batch", BOB, {"operation": "upload", "objects": []}, 404),
    ("anonymous LFS PUT", "PUT", f"/_localhub/lfs/{'a' * 64}?size=3", None, b"abc", 401),
    ("LFS PUT with a token, no ticket", "PUT", f"/_localhub/lfs/{'a' * 64}?size=3", ALICE, b"abc", 401),
    ("LFS PUT with a forged ticket", "PUT", f"/_localhub/lfs/{'a' * 64}?size=3&ticket=forged", None, b"abc", 403),
    ("LFS verify without ticket", "POST", "/_localhub/lfs/verify", ALICE, {"oid": "a" * 64, "size": 3}, 401),
]  # fmt: skip


def test_raw_probes_are_refused_and_change_nothing(site: Site) -> None:
    before = _state(site)
    lfs_before = sorted((site.hub.root / "objects" / "lfs").rglob("*"))
    results = []
    for what, method, path, token, body, _ in PROBES:
        headers = {"Authorization": f"Basic {ALICE}"} if what == "non-bearer scheme" else None
        answer = rawhttp.request(
            site.endpoint, method, path, token=token, body=body, headers=headers, timeout=10
        )
        results.append((what, answer.status))
        if method != "HEAD":
            assert "error" in answer.json(), what
    assert len(results) == len(PROBES)
    wrong = [(what, got, expected) for (what, got), (*_, expected) in zip(results, PROBES) if got != expected]
    assert wrong == []
    assert _state(site) == before
    assert sorted((site.hub.root / "objects" / "lfs").rglob("*")) == lfs_before
    assert len(PROBES) >= 35


# --------------------------------------------------------------------------- the local token


def test_without_a_token_file_the_server_makes_one_private_write_token(tmp_path: Path) -> None:
    with LocalHub(tmp_path / "hub") as hub:
        path = hub.local_token_path
        assert path is not None and path.parent == tmp_path / "hub"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert hub.token and hub.token in path.read_text()
        first = hub.token
        with use_endpoint(hub.endpoint) as endpoint:  # picks the token up: existing callers keep working
            from huggingface_hub import HfApi

            assert os.environ["HF_TOKEN"] == first
            assert HfApi(endpoint=endpoint).whoami()["name"] == LOCAL_USER
            HfApi(endpoint=endpoint).create_repo("anywhere/repo")  # the local user owns every namespace
        assert rawhttp.request(hub.endpoint, "GET", "/api/whoami-v2", token="hf_guess_123456").status == 401
    with LocalHub(tmp_path / "hub") as again:
        assert again.token == first  # reused on restart, so clients keep working
