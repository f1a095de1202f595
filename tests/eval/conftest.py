"""Fixtures for eval tests: a tiny real NLA pair, eval tables on disk, and constructed reconstructors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from hubkit import heads
from hubkit.pair import NLAPair
from hubkit.reconstructor import ActivationReconstructor
from hubkit.testing import make_tiny_model, tiny_metas
from hubkit.verbalizer import ActivationVerbalizer

D = 32


def write_table(path: Path, vectors: np.ndarray, doc_ids=None, explanations=None, width=None) -> Path:
    """An eval table in the data pipeline's format (fixed-size float32 list column)."""
    n, d = vectors.shape
    cols = {
        "doc_id": [f"doc{i // 2}" for i in range(n)] if doc_ids is None else list(doc_ids),
        "position": list(range(n)),
        "prefix": [f"prefix of row {i}" for i in range(n)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), width or d),
    }
    if explanations is not None:
        cols["explanation"] = list(explanations)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), str(path))
    return path


class ConstantAR:
    """Ignores its input: the same vector for every text."""

    def __init__(self, vector: np.ndarray) -> None:
        self.vector = torch.as_tensor(vector, dtype=torch.float32)
        self.calls: list[list[str]] = []

    def reconstruct(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return self.vector.repeat(len(texts), 1)


class OracleAR:
    """Reads its input: a lookup from explanation text to vector; any other text maps to a fixed vector."""

    def __init__(self, table: dict[str, np.ndarray], other: np.ndarray) -> None:
        self.table = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in table.items()}
        self.other = torch.as_tensor(other, dtype=torch.float32)

    def reconstruct(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self.table.get(t, self.other) for t in texts])


def real_ar(tiny, ar_meta, weight: torch.Tensor, bias: torch.Tensor | None) -> ActivationReconstructor:
    """A real AR over the tiny model with the given head."""
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    return ActivationReconstructor(tiny.model, tiny.tokenizer, ar_meta, head)


def fitted_ar(tiny, ar_meta, texts: list[str], vectors: np.ndarray) -> ActivationReconstructor:
    """A real AR whose head is fitted so that AR(texts[i]) = vectors[i]: it can only get there by reading."""
    d = vectors.shape[1]
    probe = real_ar(tiny, ar_meta, torch.eye(d), None)
    h, _ = probe.hidden(texts)
    sol = torch.linalg.lstsq(h.double(), torch.from_numpy(vectors)).solution  # h @ W^T = v
    return real_ar(tiny, ar_meta, sol.T.float(), None)


def blind_real_ar(tiny, ar_meta, seed: int = 5) -> ActivationReconstructor:
    """A real AR whose head ignores the backbone: weight 0, bias a fixed vector."""
    bias = torch.from_numpy(np.random.default_rng(seed).normal(size=D)).float()
    return real_ar(tiny, ar_meta, torch.zeros(D, D), bias)


@pytest.fixture(scope="session")
def tiny():
    return make_tiny_model("llama", d_model=D, n_layers=2, seed=0)


@pytest.fixture(scope="session")
def metas(tiny):
    return tiny_metas(tiny, layer=1)


@pytest.fixture(scope="session")
def tiny_pair(tiny, metas) -> NLAPair:
    av_meta, ar_meta = metas
    av = ActivationVerbalizer(tiny.model, tiny.tokenizer, av_meta)
    ar = ActivationReconstructor(tiny.model, tiny.tokenizer, ar_meta, heads.identity_head(D))
    return NLAPair(av, ar)


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(12, D))


IDENTICAL = {0, 7}  # the server echoes these unchanged (different case and spacing)
EMPTY = {3}  # the server answers these with empty tags
_INNER = re.compile(r"<explanation>(.*?)</explanation>", re.S)


def rewording_server_reply(messages: list[dict]) -> str:
    """A deterministic paraphraser: same claim, other words; echoes or empties chosen rows.

    ``item number I is about topic X`` → ``topic X is what entry I concerns`` (rows in `IDENTICAL` are
    echoed in upper case, rows in `EMPTY` get empty tags); any other text comes back with its words reversed.
    """
    text = _INNER.findall(messages[-1]["content"])[-1]  # the instruction names the tags first
    m = re.search(r"item number (\d+)", text)
    if m is None:
        return f"<explanation>{' '.join(reversed(text.split()))}</explanation>"
    i = int(m.group(1))
    if i in IDENTICAL:
        return f"<explanation>  {text.upper()} </explanation>"
    if i in EMPTY:
        return "<explanation></explanation>"
    topic = text.rsplit(" ", 1)[-1]
    return f"Sure. <explanation>topic {topic} is what entry {i} concerns</explanation>"


@pytest.fixture
def rewording_server():
    from data.chat_server import ChatServer  # tests/data, on the path as a test package

    s = ChatServer(reply=rewording_server_reply)
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def server_labeler(rewording_server):
    """The real HTTP labeler backend talking to `rewording_server`."""
    from hubkit.data.labelers import OpenAIChatLabeler

    return OpenAIChatLabeler(rewording_server.base_url, "rewriter", concurrency=2, max_retries=0)
