"""The remote engine against a server speaking vLLM's completions protocol (embeddings generated
by transformers there): same tokens as the transformers path, chunked, ordered; error answers."""

from __future__ import annotations

import pytest
import torch

from hubkit import engines
from hubkit.engines import EngineError, Sampling, vllm_remote
from hubkit.engines.vllm_remote import RemoteEngine
from hubkit.testing import tiny_metas
from hubkit.verbalizer import ActivationVerbalizer

from .embeds_server import EmbedsServer


@pytest.fixture
def av(tiny_llama):
    return ActivationVerbalizer(tiny_llama.model, tiny_llama.tokenizer, tiny_metas(tiny_llama)[0])


def test_remote_equals_transformers_in_order(av, tiny_llama, monkeypatch):
    monkeypatch.setattr(vllm_remote, "CHUNK", 4)  # 10 rows → 3 concurrent requests
    v = torch.randn(10, tiny_llama.d_model)
    ref = av.explain_detailed(v, batch_size=10, max_new_tokens=8)
    with EmbedsServer(tiny_llama.model, tiny_llama.tokenizer.eos_token_id) as server:
        got = av.explain_detailed(v, max_new_tokens=8, engine=server.url)
        engines.close_engines()
    assert [(g.raw, g.status, g.n_tokens) for g in got] == [(r.raw, r.status, r.n_tokens) for r in ref]
    assert sorted(len(r["prompt_embeds"]) for r in server.requests) == [2, 4, 4]
    assert all(r["return_token_ids"] and r["temperature"] == 0.0 for r in server.requests)
    assert all(r["stop_token_ids"] == [tiny_llama.tokenizer.eos_token_id] for r in server.requests)


def test_remote_error_answer_is_one_line(tiny_llama, av):
    with EmbedsServer(tiny_llama.model, tiny_llama.tokenizer.eos_token_id) as server:
        engine = RemoteEngine(server.url, model="not-served")
        with pytest.raises(
            EngineError, match=r"answered HTTP 404: The model `not-served` does not exist"
        ) as err:
            engine.generate_from_embeddings(
                av.prompt_embeddings(torch.randn(1, 64)), Sampling(max_new_tokens=2)
            )
        assert "\n" not in str(err.value)
        with pytest.raises(EngineError, match="start the server with --enable-lora"):
            RemoteEngine(server.url).generate_from_embeddings(
                av.prompt_embeddings(torch.randn(1, 64)), Sampling(max_new_tokens=2, adapter="/nowhere")
            )
