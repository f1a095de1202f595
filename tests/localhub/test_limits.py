"""Limits and input hygiene of the local Hub, probed with raw sockets and the real client.

Oversized bodies get 413 before they are read; half-open sockets hold no threads and do not lock
out a real client; names are full matches; header values carry no CR/LF; URLs the server hands
out are built from its own address, never from the request's Host header.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from hubkit.localhub import Limits, LocalHub, use_endpoint
from hubkit.localhub.objects import RepoKey

from . import rawhttp
from .conftest import ALICE, PUBLIC, Site, write_token_file

HEADER = b'{"key":"header","value":{"summary":"x"}}\n'


def _repo_dirs(site: Site) -> list[str]:
    return sorted(p.name for p in (site.hub.root / "repos" / "models").glob("*/*"))


def test_an_oversized_announced_commit_body_gets_413_before_it_is_sent(site: Site) -> None:
    path = f"/api/models/{PUBLIC}/commit/main"
    for token in (ALICE, None):  # refused for its size before anything else
        with rawhttp.connect(site.endpoint, timeout=5) as sock:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {300 * 1024**2}\r\n\r\n".encode()
            )
            answer = rawhttp.read_answer(sock)  # answered although not one body byte was sent
        assert answer.status == 413 and answer.headers["connection"] == "close"


def test_a_chunked_commit_body_over_the_limit_is_cut_off(site: Site) -> None:
    before = site.api(ALICE).model_info(PUBLIC).sha
    with rawhttp.connect(site.endpoint, timeout=10) as sock:
        head = (
            f"POST /api/models/{PUBLIC}/commit/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
        )
        sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
        line = HEADER * 1000
        try:
            for _ in range(200):  # ~8 MiB offered, the limit is 4 MiB
                sock.sendall(b"%x\r\n%s\r\n" % (len(line), line))
        except OSError:
            pass
        answer = rawhttp.read_answer(sock)
    assert answer.status == 413
    assert site.api(ALICE).model_info(PUBLIC).sha == before


def test_half_open_sockets_hold_no_threads_and_do_not_block_a_real_client(site: Site, tmp_path: Path) -> None:
    threads_before = threading.active_count()
    idle = []
    for i in range(300):  # half send nothing, half a partial request head
        sock = rawhttp.connect(site.endpoint, timeout=5)
        if i % 2:
            sock.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\n")
        idle.append(sock)
    try:
        time.sleep(0.3)
        start = time.monotonic()
        api = site.api(ALICE)
        assert api.model_info(PUBLIC).id == PUBLIC
        path = hf_hub_download(
            PUBLIC, "config.json", endpoint=site.endpoint, token=ALICE, cache_dir=tmp_path / "c"
        )
        api.create_commit(PUBLIC, [CommitOperationAdd("after.txt", b"ok")], commit_message="after the flood")
        elapsed = time.monotonic() - start
        assert Path(path).read_bytes() == b'{"d": 8}\n'
        assert elapsed < 10, f"a real client waited {elapsed:.1f} s behind half-open sockets"
        grew = threading.active_count() - threads_before
        assert grew <= site.hub.limits.workers + 2, f"{grew} new threads for 300 half-open sockets"
        assert site.hub._server.open_connections <= site.hub.limits.max_connections  # type: ignore[union-attr]
    finally:
        for sock in idle:
            sock.close()


def test_a_silent_connection_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    token_file = write_token_file(tmp_path / "tokens.yaml")
    with LocalHub(tmp_path / "hub", token_file=token_file, limits=Limits(header_timeout=0.5)) as hub:
        with (
            rawhttp.connect(hub.endpoint, timeout=5) as silent,
            rawhttp.connect(hub.endpoint, timeout=5) as slow,
        ):
            slow.sendall(b"GET / HTTP/1.1\r\n")
            start = time.monotonic()
            assert silent.recv(10) == b"" and slow.recv(10) == b""  # closed by the server
            assert time.monotonic() - start < 3


@pytest.mark.parametrize(
    "body",
    [{}, {"name": 5}, {"name": None}, {"name": "x\n"}, {"name": "ok", "organization": 5},
     {"name": "ok", "organization": "alice\n"}, {"name": "ok", "type": "weird"}, {"name": "a/b"}, {"name": "..x"}],
)  # fmt: skip
def test_a_create_with_a_bad_name_is_refused(site: Site, body: dict) -> None:
    before = _repo_dirs(site)
    answer = rawhttp.request(site.endpoint, "POST", "/api/repos/create", token=ALICE, body=body)
    assert answer.status == 400
    assert _repo_dirs(site) == before
    assert not any(p.name.endswith("\n") for p in site.hub.root.rglob("*"))


def test_names_are_full_matches_everywhere(site: Site) -> None:
    assert not RepoKey("model", "alice/public\n").is_valid
    assert rawhttp.request(site.endpoint, "GET", "/api/models/alice/public%0A", token=ALICE).status == 404
    assert rawhttp.request(site.endpoint, "GET", "/alice/public%0A/resolve/main/config.json").status == 404
    tag = rawhttp.request(
        site.endpoint, "POST", f"/api/models/{PUBLIC}/tag/main", token=ALICE, body={"tag": "v2\n"}
    )
    assert tag.status == 400
    commit = HEADER + b'{"key":"file","value":{"path":"a\\nb.txt","content":"x"}}\n'
    answer = rawhttp.request(
        site.endpoint, "POST", f"/api/models/{PUBLIC}/commit/main", token=ALICE, body=commit
    )
    assert answer.status == 400
    oid = "a" * 64 + "\n"
    assert site.hub.store.lfs_size(oid) is None


def test_header_values_carry_no_control_characters(site: Site) -> None:
    answer = rawhttp.request(site.endpoint, "GET", "/api/nothing%0D%0AX-Injected:%20yes%0D%0A")
    assert answer.status == 404
    assert b"X-Injected" not in answer.raw_head.split(b"\r\n", 1)[0]
    assert not any(line.lower().startswith(b"x-injected") for line in answer.raw_head.split(b"\r\n"))
    assert all(32 <= ord(c) < 127 for c in answer.headers["x-error-message"])


def test_urls_are_built_from_the_servers_own_address(site: Site) -> None:
    evil = {"Host": "evil.example:80"}
    batch = rawhttp.request(
        site.endpoint,
        "POST",
        f"/{PUBLIC}.git/info/lfs/objects/batch",
        token=ALICE,
        body={"operation": "upload", "objects": [{"oid": "b" * 64, "size": 3}]},
        headers=evil,
    )
    actions = batch.json()["objects"][0]["actions"]
    assert actions["upload"]["href"].startswith(site.endpoint + "/")
    assert actions["verify"]["href"].startswith(site.endpoint + "/")
    created = rawhttp.request(
        site.endpoint, "POST", "/api/repos/create", token=ALICE, body={"name": "h"}, headers=evil
    )
    assert created.json()["url"] == f"{site.endpoint}/alice/h"
    commit = rawhttp.request(
        site.endpoint, "POST", f"/api/models/{PUBLIC}/commit/main", token=ALICE, body=HEADER, headers=evil
    )
    assert commit.json()["commitUrl"].startswith(f"{site.endpoint}/{PUBLIC}/commit/")
    assert b"evil" not in batch.body + created.body + commit.body


def test_keep_alive_and_pipelined_requests_are_answered_in_order(site: Site) -> None:
    one = b"GET /api/models/alice/public HTTP/1.1\r\nHost: x\r\n\r\n"
    with rawhttp.connect(site.endpoint, timeout=5) as sock:
        sock.sendall(one + one.replace(b"public", b"absent"))  # two requests in one write
        pending = bytearray()
        first, second = rawhttp.read_answer(sock, pending), rawhttp.read_answer(sock, pending)
    assert (first.status, second.status) == (200, 404)


def test_many_clients_at_once_are_all_served(site: Site) -> None:
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(5):
                assert HfApi(endpoint=site.endpoint, token=ALICE).model_info(PUBLIC).id == PUBLIC
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)


def test_the_server_stops_with_connections_open(tmp_path: Path) -> None:
    token_file = write_token_file(tmp_path / "tokens.yaml")
    hub = LocalHub(tmp_path / "hub", token_file=token_file).start()
    with use_endpoint(hub.endpoint):
        socks = [socket.create_connection(("127.0.0.1", hub.port), timeout=5) for _ in range(5)]
        start = time.monotonic()
        hub.stop()
        assert time.monotonic() - start < 5
        for s in socks:
            assert s.recv(10) == b""
            s.close()


def test_expect_continue_is_answered_only_when_the_body_is_wanted(site: Site) -> None:
    path = f"/api/models/{PUBLIC}/commit/main"
    auth = f"Authorization: Bearer {ALICE}\r\n"
    with rawhttp.connect(site.endpoint, timeout=5) as sock:  # too large: 413, never "100 Continue"
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Expect: 100-continue\r\nContent-Length: {1 << 30}\r\n\r\n".encode()
        )
        assert rawhttp.read_answer(sock).status == 413
    body = HEADER + b'{"key":"file","value":{"path":"expect.txt","content":"ok"}}\n'
    with rawhttp.connect(site.endpoint, timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        pending = bytearray()
        assert rawhttp.read_answer(sock, pending).status == 100
        sock.sendall(body)
        assert rawhttp.read_answer(sock, pending).status == 200
    assert "expect.txt" in {f.path for f in site.api(ALICE).list_repo_tree(PUBLIC)}


def test_anonymous_requests_get_a_small_body_limit(site: Site) -> None:
    body = {"content": "---\nx: " + "y" * (2 * 1024 * 1024) + "\n---\n"}
    assert rawhttp.request(site.endpoint, "POST", "/api/validate-yaml", body=body).status == 413
    assert rawhttp.request(site.endpoint, "POST", "/api/validate-yaml", token=ALICE, body=body).status == 200


def test_a_trickling_body_is_cut_off(tmp_path: Path) -> None:
    token_file = write_token_file(tmp_path / "tokens.yaml")
    limits = Limits(io_timeout=0.5, min_body_rate=1000)
    with LocalHub(tmp_path / "hub", token_file=token_file, limits=limits) as hub:
        with rawhttp.connect(hub.endpoint, timeout=10) as sock:
            sock.sendall(b"POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            start, closed = time.monotonic(), False
            while time.monotonic() - start < 8 and not closed:
                try:
                    sock.sendall(b"x" * 10)  # 50 bytes/s: far below 1000
                    time.sleep(0.2)
                except OSError:
                    closed = True
            if not closed:
                sock.settimeout(2)
                closed = sock.recv(10) == b""
        assert closed and time.monotonic() - start < 8


def test_conflicting_content_lengths_are_refused(site: Site) -> None:
    head = "POST /api/validate-yaml HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
    with rawhttp.connect(site.endpoint, timeout=5) as sock:
        sock.sendall(head.encode())
        answer = rawhttp.read_answer(sock)
    assert answer.status == 400 and answer.headers["connection"] == "close"
