"""Tokens never reach log records or error messages, even at DEBUG with a server that echoes them."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, get_session

from hubkit.hub import push_folder
from hubkit.hub.redaction import protect, redact
from hubkit.localhub import LocalHub, use_endpoint

ECHOED = "hf_echoed_by_a_server_4d7e1b9c2a"


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A loopback server that answers every request by echoing its Authorization header back."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            auth = next(
                (
                    line.split(b":", 1)[1].strip()
                    for line in data.split(b"\r\n")
                    if line.lower().startswith(b"authorization:")
                ),
                b"",
            )
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nAuthorization: " + auth + b"\r\nX-Token: " + auth.split(b" ")[-1]
                + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            )  # fmt: skip

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    thread.join(timeout=10)


def test_an_echoed_authorization_header_is_redacted_in_debug_logs(
    echo_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    protect(ECHOED)
    with use_endpoint(echo_server):  # lets huggingface_hub's session talk to a loopback address
        response = get_session().get(echo_server + "/x", headers=build_hf_headers(token=ECHOED))
    assert response.headers["X-Token"] == ECHOED  # the server did echo it
    logged = caplog.text
    assert "receive_response_headers" in logged and "Authorization" in logged  # the headers were logged...
    assert ECHOED not in logged and "***" in logged  # ...with the token masked


def test_a_push_at_debug_logs_no_token_and_no_upload_ticket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    (folder / "config.json").write_text("{}")
    with LocalHub(tmp_path / "hub") as hub, use_endpoint(hub.endpoint):
        token = hub.token
        assert token is not None
        push_folder(folder, "hubkit-org/x", commit_message="x", endpoint=hub.endpoint, token=token, tag="v1")
        assert hub.stats.lfs_uploads == 1
        tickets = list(hub.uploads._tickets)
    assert len(tickets) == 1 and "/_localhub/lfs/" in caplog.text  # the upload request was logged...
    assert tickets[0] not in caplog.text  # ...without its one-time ticket
    assert token not in caplog.text


def test_a_refused_token_is_not_in_the_error(tmp_path: Path) -> None:
    wrong = "hf_wrong_token_value_e0a7c35b"
    with LocalHub(tmp_path / "hub") as hub, use_endpoint(hub.endpoint):
        with pytest.raises(HfHubHTTPError) as refused:
            HfApi(endpoint=hub.endpoint, token=wrong).create_repo("hubkit-local/x")
    assert refused.value.response.status_code == 401
    assert wrong not in str(refused.value)


def test_redact_masks_credentials_and_leaves_ordinary_words() -> None:
    protect("my-own-secret-value")
    text = (
        "(b'Authorization', b'Bearer abc.def'), authorization: xyz123, token my-own-secret-value, "
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 via hf_hub_download"
    )
    out = redact(text)
    for secret in ("abc.def", "xyz123", "my-own-secret-value", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"):
        assert secret not in out
    assert "hf_hub_download" in out and out.count("***") == 4
