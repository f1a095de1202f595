"""Fixtures for the data-stage tests: tiny models, small corpora, and a Chat Completions server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubkit.data.corpus import Corpus, load_corpus
from hubkit.testing import make_tiny_model

from .chat_server import ChatServer


@pytest.fixture(scope="session")
def tiny():
    return make_tiny_model("llama", d_model=32, n_layers=3, seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny) -> Path:
    return tiny.save(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def small_corpus() -> Corpus:
    """12 real paragraphs from the bundled corpus."""
    return load_corpus("bundled", limit=12)


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    """A .txt corpus: six documents separated by blank lines."""
    texts = [d.text for d in load_corpus("bundled", limit=6).documents]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(texts) + "\n")
    return path


@pytest.fixture
def chat_server():
    server = ChatServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
