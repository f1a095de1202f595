"""LFS uploads only through one-time URLs the batch endpoint issues, bound to oid and size."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info

from hubkit.localhub import Limits, LocalHub, use_endpoint

from . import rawhttp
from .conftest import ALICE, PUBLIC, Site, write_token_file

DATA = bytes(range(256)) * 40


def _ticket_url(site: Site, data: bytes = DATA, token: str = ALICE, repo: str = PUBLIC) -> dict:
    actions, errors, _ = post_lfs_batch_info(
        [UploadInfo.from_bytes(data)], token=token, repo_type="model", repo_id=repo, endpoint=site.endpoint
    )
    assert errors == []
    return actions[0]["actions"]


def _path(url: str) -> str:
    return url.split("/", 3)[3].join(["/", ""])


def _stored(site: Site, data: bytes = DATA) -> bool:
    return site.hub.store.lfs_size(hashlib.sha256(data).hexdigest()) is not None


def test_an_issued_url_uploads_once_and_only_its_object(site: Site) -> None:
    actions = _ticket_url(site)
    upload = _path(actions["upload"]["href"])
    oid = hashlib.sha256(DATA).hexdigest()
    other_oid = upload.replace(oid, hashlib.sha256(b"other").hexdigest())
    other_size = upload.replace(f"size={len(DATA)}", f"size={len(DATA) - 1}")
    assert rawhttp.request(site.endpoint, "PUT", other_oid, body=DATA).status == 403  # bound to the oid
    assert rawhttp.request(site.endpoint, "PUT", other_size, body=DATA[:-1]).status == 403  # and to the size
    assert not _stored(site)
    answer = rawhttp.request(site.endpoint, "PUT", upload, body=DATA)
    assert answer.status == 200 and _stored(site)
    again = rawhttp.request(site.endpoint, "PUT", upload, body=DATA)
    assert again.status == 403 and "already used" in again.json()["error"]
    verify = _path(actions["verify"]["href"])
    assert (
        rawhttp.request(
            site.endpoint, "POST", verify, token=ALICE, body={"oid": oid, "size": len(DATA)}
        ).status
        == 200
    )


def test_a_failed_upload_leaves_its_url_usable_for_the_retry(site: Site) -> None:
    upload = _path(_ticket_url(site)["upload"]["href"])
    assert rawhttp.request(site.endpoint, "PUT", upload, body=DATA[:-1] + b"!").status == 400  # wrong bytes
    assert rawhttp.request(site.endpoint, "PUT", upload, body=DATA).status == 200


def test_an_expired_url_is_refused(tmp_path: Path) -> None:
    token_file = write_token_file(tmp_path / "tokens.yaml")
    hub = LocalHub(tmp_path / "hub", token_file=token_file, limits=Limits(upload_ttl=0.3))
    with hub, use_endpoint(hub.endpoint):
        HfApi(endpoint=hub.endpoint, token=ALICE).create_repo(PUBLIC)
        site = Site(hub, token_file)
        upload = _path(_ticket_url(site)["upload"]["href"])
        time.sleep(0.5)
        answer = rawhttp.request(hub.endpoint, "PUT", upload, body=DATA)
        assert answer.status == 403 and "expired" in answer.json()["error"]
        assert not _stored(site)


def test_an_upload_announcing_more_than_its_url_allows_gets_413_before_sending(site: Site) -> None:
    upload = _path(_ticket_url(site)["upload"]["href"])
    received = site.hub.stats.lfs_bytes_received
    with rawhttp.connect(site.endpoint, timeout=5) as sock:
        head = f"PUT {upload} HTTP/1.1\r\nHost: x\r\nContent-Length: {50 * 1024**3}\r\n\r\n"
        sock.sendall(head.encode())  # no body byte is ever sent: the answer must come anyway
        answer = rawhttp.read_answer(sock)
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert site.hub.stats.lfs_bytes_received == received


def test_a_chunked_upload_is_cut_off_past_its_size(site: Site) -> None:
    upload = _path(_ticket_url(site)["upload"]["href"])
    received = site.hub.stats.lfs_bytes_received
    chunk = b"x" * 65536
    with rawhttp.connect(site.endpoint, timeout=5) as sock:
        sock.sendall(f"PUT {upload} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sent = 0
        try:
            for _ in range(64):  # 4 MiB offered for a 10 kB object
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: cut off
        answer = rawhttp.read_answer(sock)
    assert answer.status == 413
    assert site.hub.stats.lfs_bytes_received - received <= len(DATA) + 65536
    assert not _stored(site)


def test_the_real_client_uploads_through_the_issued_urls(site: Site) -> None:
    alice = site.api(ALICE)
    big = bytes(reversed(DATA)) * 3
    alice.create_commit(PUBLIC, [CommitOperationAdd("w/big.safetensors", big)], commit_message="big")
    info = alice.get_paths_info(PUBLIC, ["w/big.safetensors"])[0]
    assert info.lfs.sha256 == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("size", [len(DATA) - 1, str(len(DATA))])
def test_a_commit_naming_an_uploaded_object_with_another_size_is_refused(site: Site, size: object) -> None:
    site.api(ALICE).create_commit(PUBLIC, [CommitOperationAdd("w.bin", DATA)], commit_message="upload")
    oid = hashlib.sha256(DATA).hexdigest()
    lines = [
        {"key": "header", "value": {"summary": "pointer"}},
        {"key": "lfsFile", "value": {"path": "v.bin", "algo": "sha256", "oid": oid, "size": size}},
    ]
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    answer = rawhttp.request(
        site.endpoint, "POST", f"/api/models/{PUBLIC}/commit/main", token=ALICE, body=body
    )
    assert answer.status == 400 and f"has {len(DATA)} bytes, not {size}" in answer.json()["error"]


@pytest.mark.parametrize("size", [-1, "3", None])
def test_a_batch_with_a_bad_size_issues_no_url(site: Site, size: object) -> None:
    body = {"operation": "upload", "objects": [{"oid": "a" * 64, "size": size}]}
    answer = rawhttp.request(
        site.endpoint, "POST", f"/{PUBLIC}.git/info/lfs/objects/batch", token=ALICE, body=body
    )
    assert answer.status == 200
    assert "actions" not in answer.json()["objects"][0] and "error" in answer.json()["objects"][0]


def test_knowing_a_private_files_sha256_does_not_give_its_bytes(site: Site, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import BadRequestError, EntryNotFoundError

    from .conftest import BOB, PRIVATE, SECRET_BYTES

    secret = SECRET_BYTES + PRIVATE.encode()  # alice's private weights; bob learnt the sha256 somewhere
    oid = hashlib.sha256(secret).hexdigest()
    bob = site.api(BOB)
    bob.create_repo("bob/steal")
    actions = _ticket_url(site, secret, token=BOB, repo="bob/steal")  # no "already stored" for bob
    assert "upload" in actions
    pointer = CommitOperationAdd("w.safetensors", secret)
    pointer._upload_mode, pointer._is_uploaded = "lfs", True  # a client that skips the upload
    with pytest.raises(BadRequestError, match="never uploaded"):
        bob.create_commit("bob/steal", [pointer], commit_message="pointer only")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            "bob/steal", "w.safetensors", endpoint=site.endpoint, token=BOB, cache_dir=tmp_path / "c"
        )
    bob.create_commit(
        "bob/steal", [CommitOperationAdd("w.safetensors", secret)], commit_message="has the bytes"
    )
    assert bob.get_paths_info("bob/steal", ["w.safetensors"])[0].lfs.sha256 == oid  # uploading them proves it

    sent = site.hub.stats.lfs_bytes_received
    site.api(ALICE).create_commit(
        PUBLIC, [CommitOperationAdd("copy.safetensors", secret)], commit_message="reuse"
    )
    assert site.hub.stats.lfs_bytes_received == sent  # the owner reuses her stored bytes without sending them
