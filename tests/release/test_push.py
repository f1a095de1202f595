"""Pushing bundles to a local Hub endpoint with the real huggingface_hub client.

One commit per repo, a tag, remote sha256s equal to provenance.json; a re-push makes no commit and
sends no bytes; an interrupted push leaves the remote as it was and a re-run completes it; the token
is in no byte that was pushed, written or logged; a dry run touches no network; the released pair and
trajectory load back by repo id, tag and subfolder with the same reconstructions as the local files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import HfApi, constants

from hubkit import NLAPair
from hubkit import constants as C
from hubkit.cli.release import release as release_command
from hubkit.errors import CheckpointError
from hubkit.hub import remote_sha256s
from hubkit.localhub import LocalHub, use_endpoint
from hubkit.release.bundle import build_bundle
from hubkit.release.errors import PushError
from hubkit.release.push import push_bundle, scrub

from .conftest import TOKEN, trajectory_spec, write_spec

AV, AR, TRAJ = "hubkit-org/tiny-nla-av", "hubkit-org/tiny-nla-ar", "hubkit-org/tiny-nla-av-trajectory"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A local Hub that accepts TOKEN (as its local user), with a throwaway download cache."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with LocalHub(tmp_path / "hub") as running, use_endpoint(running.endpoint, token=TOKEN):
        yield running


def _state(api: HfApi, repo: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Commits, tree (path → blob id) and tags of a repo: what an interrupted push must not move."""
    commits = [c.commit_id for c in api.list_repo_commits(repo)]
    tree = {f.path: f.blob_id for f in api.list_repo_tree(repo, recursive=True) if hasattr(f, "blob_id")}
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo).tags}
    return commits, tree, tags


def _provenance(folder: Path) -> dict[str, str]:
    files = json.loads((folder / C.PROVENANCE_FILE).read_text())["files"]
    return {p: r["sha256"] for p, r in files.items()}


def test_push_is_one_commit_per_repo_tagged_and_verified(project, hub):
    bundle = build_bundle(write_spec(project), project["root"] / "out")
    pushed = push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    api = HfApi(endpoint=hub.endpoint)
    assert [p.result.repo_id for p in pushed] == [AV, AR]
    for p in pushed:
        commits, tree, tags = _state(api, p.result.repo_id)
        assert len(commits) == 2  # the repo's initial commit + the release commit
        assert p.result.created_commit and p.verified and p.result.tag_created
        assert tags == {"v0.1": commits[0]} and commits[0] == p.result.commit
        folder = bundle.root / p.target.folder
        expected = {**_provenance(folder), C.PROVENANCE_FILE: None}
        assert set(tree) - {".gitattributes"} == set(expected)
        remote = remote_sha256s(p.result.repo_id, revision="v0.1", endpoint=hub.endpoint)
        remote.pop(".gitattributes")
        prov_sha = remote.pop(C.PROVENANCE_FILE)
        assert remote == _provenance(folder)
        assert prov_sha == hashlib.sha256((folder / C.PROVENANCE_FILE).read_bytes()).hexdigest()


def test_repush_makes_no_commit_and_uploads_nothing(project, hub):
    bundle = build_bundle(write_spec(project), project["root"] / "out")
    push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    api = HfApi(endpoint=hub.endpoint)
    before = {r: _state(api, r) for r in (AV, AR)}
    sent, commits = hub.stats.lfs_bytes_received, hub.stats.commits
    # the same bundle, and a rebuild of the same release
    for b in (bundle, build_bundle(write_spec(project), project["root"] / "out")):
        again = push_bundle(b, endpoint=hub.endpoint, token=TOKEN)
        assert all(
            not p.result.created_commit and not p.result.uploaded and not p.result.tag_created for p in again
        )
        assert all(p.verified for p in again)
    assert {r: _state(api, r) for r in (AV, AR)} == before
    assert (hub.stats.lfs_bytes_received, hub.stats.commits) == (sent, commits)


def test_a_tag_is_never_moved_and_stale_files_are_deleted(project, hub):
    push_bundle(
        build_bundle(write_spec(project), project["root"] / "out", legacy_pt=True),
        endpoint=hub.endpoint,
        token=TOKEN,
    )
    api = HfApi(endpoint=hub.endpoint)
    assert "linear_head.pt" in _state(api, AR)[1]
    changed = build_bundle(write_spec(project), project["root"] / "out")  # same tag, other files
    before = _state(api, AR)[0]
    with pytest.raises(PushError, match="tag 'v0.1' already names commit .* never moved") as info:
        push_bundle(changed, endpoint=hub.endpoint, token=TOKEN)
    now = _state(api, AR)[0]
    assert now[1:] == before  # the commit went through; the message says so instead of "left as it was"
    assert f"{AR} main is now at commit {now[0][:12]} (was {before[0][:12]})" in str(info.value)
    v2 = build_bundle(write_spec(project, tag="v0.2"), project["root"] / "out")
    push_bundle(v2, endpoint=hub.endpoint, token=TOKEN)
    commits, tree, tags = _state(api, AR)
    assert "linear_head.pt" not in tree  # deleted in the v0.2 commit
    assert tags["v0.2"] == commits[0] and tags["v0.1"] in commits[1:]


def test_interrupted_upload_leaves_remote_unchanged_and_rerun_completes(project, hub):
    push_bundle(
        build_bundle(write_spec(project), project["root"] / "out"), endpoint=hub.endpoint, token=TOKEN
    )
    api = HfApi(endpoint=hub.endpoint)
    before_ar = _state(api, AR)
    v2 = build_bundle(write_spec(project, tag="v0.2"), project["root"] / "out", legacy_pt=True)
    pt_size = (v2.root / "ar" / "linear_head.pt").stat().st_size
    hub.faults.inject("lfs_upload", status=507, after_bytes=64)  # the AR's new .pt; 507 is not retried
    with pytest.raises(PushError) as info:
        push_bundle(v2, endpoint=hub.endpoint, token=TOKEN)
    assert "run the same command again" in str(info.value) and TOKEN not in str(info.value)
    assert f"{AR} main is still at its previous commit {before_ar[0][0][:12]}" in str(info.value)
    assert hub.faults.pending == 0
    assert _state(api, AR) == before_ar  # no commit, no tag, partial bytes discarded
    assert "v0.2" in _state(api, AV)[2]  # the AV (no LFS change) went through before the failure
    sent = hub.stats.lfs_bytes_received
    done = push_bundle(v2, endpoint=hub.endpoint, token=TOKEN)
    assert [p.result.created_commit for p in done] == [False, True]  # AV already there, AR completed
    assert hub.stats.lfs_bytes_received - sent == pt_size  # only the interrupted file is sent again
    commits, tree, tags = _state(api, AR)
    assert commits[1:] == before_ar[0] and tags["v0.2"] == commits[0] and "linear_head.pt" in tree


def test_failed_commit_changes_nothing_and_retry_resends_no_bytes(project, hub):
    bundle = build_bundle(write_spec(project), project["root"] / "out")
    hub.faults.inject("commit", status=500)  # commits are not retried by the client
    with pytest.raises(PushError):
        push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    api = HfApi(endpoint=hub.endpoint)
    commits, tree, tags = _state(api, AV)
    assert len(commits) == 1 and set(tree) == {".gitattributes"} and tags == {}
    sent = hub.stats.lfs_bytes_received
    assert sent > 0  # the AV's LFS files reached the store before the commit failed
    pushed = push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    assert all(p.verified and p.result.created_commit for p in pushed)
    lfs = {
        r: {f.lfs.sha256: f.size for f in api.list_repo_tree(r, recursive=True) if getattr(f, "lfs", None)}
        for r in (AV, AR)
    }
    # the retry sends only the AR's LFS objects the store does not hold yet (the plots are the AV's)
    expected = sum(size for sha, size in lfs[AR].items() if sha not in lfs[AV])
    assert 0 < expected < sum(lfs[AR].values())
    assert hub.stats.lfs_bytes_received - sent == expected


def test_token_is_in_no_pushed_byte_file_log_or_error(project, hub, caplog):
    caplog.set_level(logging.DEBUG)
    write_spec(project)
    runner = CliRunner()
    out = project["root"] / "out"
    args = [
        "rel",
        "--releases-dir",
        str(project["root"] / "releases"),
        "--out",
        str(out),
        "--push",
        "--endpoint",
        hub.endpoint,
        "--legacy-pt",
    ]
    result = runner.invoke(release_command, args, env={"HF_TOKEN": TOKEN}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{AV}: commit" in result.output and "remote sha256 verified" in result.output
    hub.faults.inject("commit", status=500)
    failed = runner.invoke(
        release_command,
        [*args[:-1], "--out", str(project["root"] / "out2")],
        env={"HF_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    assert failed.exit_code == 2 and "error:" in failed.output
    secret = TOKEN.encode()
    scanned = 0
    for root in (hub.root, out, project["root"] / "out2"):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
                scanned += 1
    assert scanned > 40
    assert TOKEN not in caplog.text and TOKEN not in result.output and TOKEN not in failed.output
    assert scrub(f"server said {TOKEN}!", TOKEN) == "server said ***!"


def test_dry_run_prints_the_plan_and_touches_no_network(project, hub):
    write_spec(project)
    requests = hub.stats.requests
    result = CliRunner().invoke(
        release_command,
        [
            "rel",
            "--releases-dir",
            str(project["root"] / "releases"),
            "--out",
            str(project["root"] / "out"),
            "--push",
            "--dry-run",
            "--endpoint",
            hub.endpoint,
        ],
        env={"HF_TOKEN": TOKEN},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert hub.stats.requests == requests
    out = project["root"] / "out"
    listed: dict[str, dict[str, float]] = {}
    for line in result.output.splitlines():
        if line.startswith("model repo "):
            current = listed.setdefault(line.split()[2], {})
        elif line.startswith("    "):
            path, number, unit = line.split()
            current[path] = float(number) * {"B": 1, "kB": 1e3, "MB": 1e6}[unit]
    for repo, folder in ((AV, "av"), (AR, "ar")):
        files = {
            p.relative_to(out / folder).as_posix(): p.stat().st_size
            for p in (out / folder).rglob("*")
            if p.is_file()
        }
        assert f"model repo {repo}  tag v0.1  {len(files)} files" in result.output
        assert set(listed[repo]) == set(files)
        for path, size in files.items():
            assert listed[repo][path] == pytest.approx(size, rel=0.06, abs=1)


def test_cli_errors_name_the_field(project):
    write_spec(project, repos={"av": "not a repo", "ar": AR})
    result = CliRunner().invoke(release_command, ["rel", "--releases-dir", str(project["root"] / "releases")])
    assert result.exit_code == 2 and "repos.av" in result.output


def test_trajectory_is_one_commit_of_step_folders(project, hub):
    bundle = build_bundle(trajectory_spec(project), project["root"] / "out")
    push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    commits, tree, tags = _state(HfApi(endpoint=hub.endpoint), TRAJ)
    assert len(commits) == 2 and tags == {"v0.1": commits[0]}
    steps = sorted({p.split("/")[0] for p in tree if p.startswith("step_")})
    assert steps == ["step_000001", "step_000002", "step_000003"]


def test_round_trip_after_release_matches_local_checkpoints(project, hub):
    push_bundle(
        build_bundle(write_spec(project), project["root"] / "out"), endpoint=hub.endpoint, token=TOKEN
    )
    push_bundle(
        build_bundle(trajectory_spec(project), project["root"] / "out-traj"),
        endpoint=hub.endpoint,
        token=TOKEN,
    )
    v = torch.as_tensor(project["vectors"][:4])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = {
            name: NLAPair.from_pretrained(
                av=project["run"] / name if name else project["av"], ar=project["ar"]
            ).round_trip(v, max_new_tokens=5)
            for name in ("", "step_000001", "step_000002")
        }
        base = str(project["base"])  # the releases name the base by its Hub id; offline, the local copy
        remote = {
            "": NLAPair.from_pretrained(av=AV, ar=AR, revision="v0.1", base_model=base),
            "step_000002": NLAPair.from_pretrained(
                av=TRAJ,
                ar=AR,
                av_revision="v0.1",
                ar_revision="v0.1",
                av_subfolder="step_000002",
                base_model=base,
            ),
        }
        for name, pair in remote.items():
            got = pair.round_trip(v, max_new_tokens=5)
            assert got.explanations == local[name].explanations
            torch.testing.assert_close(got.reconstructions, local[name].reconstructions)
    finally:
        torch.set_num_threads(threads)
    # different checkpoints really differ, so the comparisons above could fail
    assert local["step_000001"].explanations != local["step_000002"].explanations
    # what was downloaded is checked on load against the provenance.json of its repo, step folders too
    from hubkit.checkpoint import verify_on_load
    from hubkit.hub import resolve

    step = resolve(TRAJ, revision="v0.1", subfolder="step_000002")
    assert verify_on_load(resolve(AV, revision="v0.1")) and verify_on_load(step)
    (step / C.ADAPTER_WEIGHTS_FILE).resolve().write_bytes(b"damaged in the local cache")
    with pytest.raises(
        CheckpointError, match=rf"{C.ADAPTER_WEIGHTS_FILE}: sha256 differs .* {C.PROVENANCE_FILE}"
    ):
        NLAPair.from_pretrained(av=TRAJ, ar=AR, revision="v0.1", av_subfolder="step_000002")


def test_verification_names_a_remote_file_that_differs(project, hub):
    from hubkit.release.push import local_files, verify_remote

    bundle = build_bundle(write_spec(project), project["root"] / "out")
    pushed = push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    target, folder = pushed[0].target, bundle.root / "av"
    files = local_files(bundle, target)
    assert verify_remote(target, pushed[0].result.commit, folder, files, hub.endpoint, TOKEN)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    later = api.upload_file(path_or_fileobj=b"edited on the Hub", path_in_repo="README.md", repo_id=AV).oid
    with pytest.raises(PushError, match=r"README\.md \(other content on the Hub\)"):
        verify_remote(target, later, folder, files, hub.endpoint, TOKEN)
    extra = api.upload_file(path_or_fileobj=b"\0" * 10, path_in_repo="x.safetensors", repo_id=AV).oid
    with pytest.raises(PushError, match=r"x\.safetensors \(not in the bundle\)"):
        verify_remote(target, extra, folder, files, hub.endpoint, TOKEN)
    # pushing again restores the release (README back, x.safetensors deleted) in one commit
    again = push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)[0].result
    assert again.created_commit and again.uploaded == ["README.md"] and again.deleted == ["x.safetensors"]


def test_dropped_connection_mid_upload_is_retried_and_verified(project, hub):
    bundle = build_bundle(write_spec(project), project["root"] / "out")
    hub.faults.inject("lfs_upload", drop=True, after_bytes=100)  # the client retries a dropped PUT once (1 s)
    pushed = push_bundle(bundle, endpoint=hub.endpoint, token=TOKEN)
    assert hub.faults.pending == 0 and all(p.verified for p in pushed)
    api = HfApi(endpoint=hub.endpoint)
    distinct = {
        f.lfs.sha256
        for r in (AV, AR)
        for f in api.list_repo_tree(r, recursive=True)
        if getattr(f, "lfs", None)
    }
    assert hub.stats.lfs_uploads == len(distinct) + 1  # every object once, plus the one retried PUT
