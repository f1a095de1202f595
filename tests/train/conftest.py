"""Fixtures for training tests: a tiny saved base and a small SFT table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .train_helpers import D_MODEL, TEXTS, write_sft


@pytest.fixture(scope="session")
def train_base(tmp_path_factory) -> Path:
    """A tiny Llama (d=32, 2 blocks) saved as an HF folder: the recipes' `base_model`.

    Its LM head is scaled up 10×: at the default init (std 0.02) the logits after the final norm
    are too flat for any LoRA inside the blocks to move the loss far in a few steps.
    """
    from hubkit.testing import make_tiny_model

    tiny = make_tiny_model("llama", d_model=D_MODEL, n_layers=2, seed=0)
    with torch.no_grad():
        tiny.model.lm_head.weight.mul_(10.0)
    return tiny.save(tmp_path_factory.mktemp("train-base"))


@pytest.fixture(scope="session")
def sft_table(tmp_path_factory) -> tuple[Path, torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(len(TEXTS), D_MODEL, generator=g)
    path = write_sft(tmp_path_factory.mktemp("data") / "sft.parquet", vectors, TEXTS)
    return path, vectors, TEXTS
