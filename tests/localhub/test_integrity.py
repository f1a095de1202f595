"""Nothing acknowledged is lost: one server per root, atomic commits across threads and processes.

Figures checked here: N clients x M commits through one server (with and without parentCommit)
and P processes x M commits on one store, every acknowledged commit counted in the history.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from hubkit.localhub import HubStore, LocalHub, LocalHubError
from hubkit.localhub.errors import PreconditionFailed
from hubkit.localhub.objects import AddFile, RepoKey

from .conftest import ALICE, PUBLIC, Site

CLIENTS, COMMITS, PROCESSES = 8, 5, 3


def test_a_second_server_on_the_same_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    with LocalHub(root) as first:
        (root / "tmp" / "in-flight").write_bytes(b"a write of the first server")
        second = LocalHub(root)
        with pytest.raises(LocalHubError, match="already served by another hubkit localhub") as refused:
            second.start()
        assert str(os.getpid()) in str(refused.value) and "\n" not in str(refused.value)
        assert not second.running and first.running
        assert (root / "tmp" / "in-flight").exists()  # the refused server cleaned nothing
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        cli = subprocess.run(
            [sys.executable, "-m", "hubkit.cli", "hub", "serve", "--root", str(root), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert cli.returncode != 0
        lines = (cli.stdout + cli.stderr).strip().splitlines()
        assert len(lines) == 1 and "already served" in lines[0] and "Traceback" not in cli.stderr
    with LocalHub(root) as again:  # released on stop
        assert again.running


def _writer(api: HfApi, who: int, acknowledged: list[str], errors: list[BaseException], parent: bool) -> None:
    try:
        for i in range(COMMITS):
            op = [CommitOperationAdd(f"w{who}/c{i}.txt", f"{who}:{i}".encode())]
            while True:
                head = api.model_info(PUBLIC).sha if parent else None
                try:
                    info = api.create_commit(PUBLIC, op, commit_message=f"{who}:{i}", parent_commit=head)
                    break
                except HfHubHTTPError as exc:
                    if exc.response.status_code != 412:  # someone else committed first: refresh and retry
                        raise
            acknowledged.append(info.oid)
    except BaseException as exc:  # noqa: BLE001 - collected and asserted by the test
        errors.append(exc)


@pytest.mark.parametrize("parent", [True, False], ids=["parentCommit", "no-parent"])
def test_concurrent_writers_through_one_server_lose_nothing(site: Site, parent: bool) -> None:
    api = site.api(ALICE)
    before = len(api.list_repo_commits(PUBLIC))
    acknowledged: list[str] = []
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_writer, args=(HfApi(endpoint=site.endpoint, token=ALICE), w, acknowledged, errors, parent)
        )
        for w in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and not any(t.is_alive() for t in threads)
    history = [c.commit_id for c in api.list_repo_commits(PUBLIC)]
    lost = set(acknowledged) - set(history)
    assert len(acknowledged) == CLIENTS * COMMITS and lost == set()
    assert len(history) == before + CLIENTS * COMMITS
    files = {f.path for f in api.list_repo_tree(PUBLIC, recursive=True)}
    assert {f"w{w}/c{i}.txt" for w in range(CLIENTS) for i in range(COMMITS)} <= files


def _store_writer(root: str, who: int, parent: bool, out: multiprocessing.Queue) -> None:
    store, repo = HubStore(root), RepoKey("model", "lab/shared")
    done = []
    for i in range(COMMITS * 3):
        entry = store.put_regular(f"{who}:{i}".encode())
        while True:
            head = store.resolve(repo, "main").id if parent else None
            try:
                done.append(
                    store.apply_commit(
                        repo, "main", [AddFile(f"p{who}/{i}", entry)], title=f"{who}:{i}", parent=head
                    ).id
                )
                break
            except PreconditionFailed:
                continue
    out.put(done)


@pytest.mark.parametrize("parent", [True, False], ids=["parentCommit", "no-parent"])
def test_writers_in_several_processes_on_one_store_lose_nothing(tmp_path: Path, parent: bool) -> None:
    root = tmp_path / "hub"
    HubStore(root).create_repo(RepoKey("model", "lab/shared"))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_store_writer, args=(str(root), w, parent, out)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    acknowledged = [oid for _ in procs for oid in out.get(timeout=300)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    history = [c.id for c in HubStore(root).history(RepoKey("model", "lab/shared"), "main")]
    assert len(acknowledged) == PROCESSES * COMMITS * 3
    assert set(acknowledged) - set(history) == set()
    assert len(history) == 1 + PROCESSES * COMMITS * 3


def test_leftovers_of_killed_writes_are_cleaned_at_start(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    HubStore(root)
    (root / "tmp" / "tmpabc123").write_bytes(b"")  # an upload killed before its first byte
    (root / "tmp" / "tmpdef456").write_bytes(b"half an upl")
    (root / "tmp" / "deleted-0011").mkdir()
    (root / "tmp" / "deleted-0011" / "refs.json").write_text("{}")
    with LocalHub(root):
        assert list((root / "tmp").iterdir()) == []


def test_a_killed_upload_leaves_nothing_behind_after_a_restart(tmp_path: Path) -> None:
    """A server process killed while an upload streams: the restarted server starts clean."""
    root = tmp_path / "hub"
    code = (
        "import sys, time\n"
        "from hubkit.localhub import HubStore\n"
        "store = HubStore(sys.argv[1])\n"
        "def slow():\n"
        "    yield b'x' * 1000\n"
        "    print('streaming', flush=True)\n"
        "    time.sleep(60)\n"
        "    yield b''\n"
        "store.put_lfs('a' * 64, 2000, slow())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "streaming"
        assert len(list((root / "tmp").iterdir())) == 1
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert len(list((root / "tmp").iterdir())) == 1  # the kill left its partial file
    with LocalHub(root):
        assert list((root / "tmp").iterdir()) == []
