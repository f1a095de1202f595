"""Shared fixtures: tiny models saved to disk, and NLA checkpoints in every published layout."""

from __future__ import annotations

import logging
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
logging.getLogger("transformers").setLevel(logging.ERROR)


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="Device for model tests (cpu, cuda).")


@pytest.fixture(scope="session")
def device(request) -> str:
    return request.config.getoption("--device")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The whole run uses one torch thread: tiny models run fastest so, on a shared small CPU most of all.

    Session-scoped so that module and session fixtures that train or generate (set up before any
    function-scoped fixture) run on one thread too.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama():
    from hubkit.testing import make_tiny_model

    return make_tiny_model("llama")


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, tiny_llama):
    """A tiny Llama saved as a normal HF folder (the 'base model' of adapter checkpoints)."""
    return tiny_llama.save(tmp_path_factory.mktemp("tiny-llama-base"))
