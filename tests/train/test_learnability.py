"""Training injects what inference injects: an AV trained with hubkit's own AV code path learns to name
which of 8 fixed directions was injected (held-out draws, decoded by `ActivationVerbalizer.explain`
from the saved checkpoint), and the same training with the injection switched off stays at chance."""

from __future__ import annotations

import contextlib

import pytest
import torch

from hubkit import injection
from hubkit.train.loop import RunOptions
from hubkit.train.sft_av import train_av
from hubkit.verbalizer import ActivationVerbalizer

from .train_helpers import D_MODEL, make_recipe, write_sft

NAMES = ["apple", "bread", "cloud", "dream", "eagle", "flame", "grape", "house"]
AV = {
    "steps": 120,
    "micro_batch_size": 16,
    "checkpoint_every": 120,
    "max_length": 16,
    "adapter": {"r": 8, "alpha": 16},
    "optim": {"lr": 1e-2},
}
# The recipe's injection (embedding replacement at the base's embedding norm) with a short raw prompt:
# a 2-block model learns the route from the marker to the answer in ~100 LoRA steps (~98% at 100 steps).
NLA = {"av_template": "<v>{injection_char}</v>", "chat_template": False}


def directions() -> torch.Tensor:
    """8 orthonormal directions in R^d, fixed by a seed."""
    q, _ = torch.linalg.qr(torch.randn(D_MODEL, len(NAMES), generator=torch.Generator().manual_seed(11)))
    return q.T.contiguous()


def draws(n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """`n` noisy draws (cosine ≈ 0.95 with their direction), classes cycling through the 8 names."""
    g = torch.Generator().manual_seed(seed)
    labels = [i % len(NAMES) for i in range(n)]
    noise = torch.randn(n, D_MODEL, generator=g) * (0.3 / D_MODEL**0.5)
    return directions()[labels] + noise, labels


def accuracy(av_dir, base, vectors: torch.Tensor, labels: list[int]) -> float:
    av = ActivationVerbalizer.from_pretrained(av_dir, base_model=str(base), dtype="float32")
    texts = av.explain(vectors, max_new_tokens=24, batch_size=64)
    return sum(t.strip() == NAMES[k] for t, k in zip(texts, labels)) / len(labels)


def _train(tmp_path, base, name: str):
    vectors, labels = draws(256, seed=1)
    data = write_sft(tmp_path / f"{name}.parquet", vectors, [NAMES[k] for k in labels])
    recipe = make_recipe(base, tmp_path / name, av={**AV, "data": str(data)}, nla=NLA)
    return train_av(recipe, RunOptions(quiet=True))


@pytest.fixture(scope="module")
def held_out():
    return draws(64, seed=2)


def test_av_learns_to_name_the_injected_direction(tmp_path, train_base, held_out):
    last = _train(tmp_path, train_base, "on")
    acc = accuracy(last, train_base, *held_out)
    assert acc >= 0.9, acc


def test_without_injection_in_training_the_av_stays_at_chance(tmp_path, train_base, held_out, monkeypatch):
    """The control: the same run with `injection.injected` a no-op while training (the vector never
    reaches the model); inference on the saved checkpoint injects as usual and gains nothing from it."""
    monkeypatch.setattr(injection, "injected", lambda *args, **kwargs: contextlib.nullcontext())
    last = _train(tmp_path, train_base, "off")
    monkeypatch.undo()
    acc = accuracy(last, train_base, *held_out)
    assert acc <= 0.25, acc  # chance is 1/8
