"""A run killed with SIGKILL part-way and started again ends with every row exactly once.

The killed run is a real subprocess; the resumed run and the uninterrupted reference run in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hubkit.data.chunks import MANIFEST_FILE, parts_dir
from hubkit.data.tables import vectors_numpy

EXTRACT = textwrap.dedent("""
    import sys, time
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, extract
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    config = ExtractConfig(layer=1, positions_per_doc=3, min_position=2, max_length=40, batch_size=1,
                           docs_per_chunk=2)
    # a pause per batch keeps the run inside a chunk long enough to be killed there
    extract(load_corpus("bundled", limit=8), model, tok, sys.argv[2], config, base_model="tiny",
            on_batch=lambda i, done: time.sleep(0.15))
""")

LABEL = textwrap.dedent("""
    import sys
    from hubkit.data.label import LabelCache, label_table
    from hubkit.data.labelers import OpenAIChatLabeler
    labeler = OpenAIChatLabeler(sys.argv[1], "reference", concurrency=2)
    label_table(sys.argv[2], sys.argv[3], labeler, rows_per_chunk=3, cache=LabelCache(sys.argv[4]))
""")


def _load(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), AutoTokenizer.from_pretrained(tiny_dir)


def _run_and_kill(script: str, args: list[str], out: Path, n_chunks: int, min_done: int = 2) -> int:
    """Start `script`, SIGKILL it once `min_done` chunks are recorded; return how many were recorded."""
    manifest = parts_dir(out) / MANIFEST_FILE
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 120
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = len(json.loads(manifest.read_text())["chunks"])
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= min_done:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (
            f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        assert done >= min_done, "the run did not get far enough in time"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done = len(json.loads(manifest.read_text())["chunks"])
    assert min_done <= done < n_chunks
    return done


def _keys(table) -> list[tuple[str, int]]:
    return list(zip(table.column("doc_id").to_pylist(), table.column("position").to_pylist()))


def test_killed_extraction_resumes_without_losing_or_repeating_rows(tmp_path, tiny_dir):
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, extract

    out = tmp_path / "act.parquet"
    _run_and_kill(EXTRACT, [str(tiny_dir), str(out)], out, n_chunks=4)
    model, tok = _load(tiny_dir)
    config = ExtractConfig(
        layer=1, positions_per_doc=3, min_position=2, max_length=40, batch_size=1, docs_per_chunk=2
    )
    corpus = load_corpus("bundled", limit=8)
    redone = []
    extract(corpus, model, tok, out, config, base_model="tiny", on_chunk=lambda i, n: redone.append(i))
    assert 0 < len(redone) <= 2 and redone == sorted(redone)
    reference = extract(corpus, model, tok, tmp_path / "ref.parquet", config, base_model="tiny")
    got, ref = pq.read_table(out), pq.read_table(reference)
    assert len(set(_keys(got))) == got.num_rows == 24
    assert _keys(got) == _keys(ref)
    np.testing.assert_allclose(
        vectors_numpy(got.column("vector"), 32), vectors_numpy(ref.column("vector"), 32), rtol=1e-5, atol=1e-6
    )


@pytest.fixture
def activations(tmp_path, tiny_dir) -> Path:
    from hubkit.data.corpus import load_corpus
    from hubkit.data.extract import ExtractConfig, extract

    model, tok = _load(tiny_dir)
    return extract(
        load_corpus("bundled", limit=4),
        model,
        tok,
        tmp_path / "act.parquet",
        ExtractConfig(layer=1, positions_per_doc=3, min_position=2, max_length=24),
        base_model="tiny",
    )


def test_killed_labeling_resumes_without_losing_or_repeating_rows(tmp_path, activations, chat_server):
    """Labels come from a Chat Completions server on loopback whose answers the test can predict."""
    from hubkit.data.label import LabelCache, label_table
    from hubkit.data.labelers import OpenAIChatLabeler

    chat_server.delay = 0.1  # keeps the run alive long enough to be killed mid-chunk
    out, cache = tmp_path / "labeled.parquet", tmp_path / "cache.sqlite"
    _run_and_kill(LABEL, [chat_server.base_url, str(activations), str(out), str(cache)], out, n_chunks=4)
    chat_server.delay = 0.0
    asked_before = len(chat_server.requests)
    label_table(
        activations,
        out,
        OpenAIChatLabeler(chat_server.base_url, "reference"),
        rows_per_chunk=3,
        cache=LabelCache(cache),
    )
    assert len(chat_server.requests) > asked_before  # the unfinished chunks were labeled now
    got, source = pq.read_table(out), pq.read_table(activations)
    assert got.num_rows == 12 and len(set(_keys(got))) == 12
    assert _keys(got) == _keys(source)
    for token, explanation, status in zip(
        source.column("token").to_pylist(),
        got.column("explanation").to_pylist(),
        got.column("label_status").to_pylist(),
    ):
        assert (explanation, status) == (f'about "{token}"\nchecked', "ok")
    assert set(got.column("labeler").to_pylist()) == {"openai:reference"}
