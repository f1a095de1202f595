"""The eval's two heavy loops split over a launcher's processes, with results equal to one process.

Each process takes every `world`-th *batch* of rows, so every batch holds the rows it holds in a single
process (batch composition can move the last bit of a padded forward); results are gathered back in row
order on every rank. Sampled generation (one random stream) and engines run on rank 0 alone.
"""

from __future__ import annotations

import numpy as np
import torch

from hubkit import processes
from hubkit.eval.ablations import reconstruct_unique
from hubkit.eval.generation import Generation
from hubkit.verbalizer import DEFAULT_BATCH_SIZE, Explanation

AR_BATCH_SIZE = 32  # `ActivationReconstructor.reconstruct`'s own default


def _batches(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(n, s + size))) for s in range(0, n, size)]


def generate(gen: Generation, av, vectors: torch.Tensor, progress: bool) -> list[Explanation]:
    """`gen.run(av, vectors)`, its batches shared among the processes."""
    _, world = processes.rank_world()
    if world == 1:
        return gen.run(av, vectors, progress)
    if gen.do_sample or gen.engine != "transformers":
        return processes.on_main(lambda: gen.run(av, vectors, progress))
    mine = [
        i for b in processes.my_share(_batches(len(vectors), gen.batch_size or DEFAULT_BATCH_SIZE)) for i in b
    ]
    done = gen.run(av, vectors[mine], progress) if mine else []
    out: list[Explanation | None] = [None] * len(vectors)
    for rows, details in processes.gather((mine, done)):
        for i, d in zip(rows, details, strict=True):
            out[i] = d
    return out  # type: ignore[return-value]


def reconstruct(ar, texts: list[str], batch_size: int | None) -> np.ndarray:
    """`reconstruct_unique(ar, texts, batch_size)`, the distinct texts' batches shared among the processes."""
    _, world = processes.rank_world()
    if world == 1 or not texts:
        return reconstruct_unique(ar, texts, batch_size)
    size = batch_size or AR_BATCH_SIZE
    unique = sorted(dict.fromkeys(texts), key=len)  # the order reconstruct_unique batches them in
    mine = [i for b in processes.my_share(_batches(len(unique), size)) for i in b]
    part = reconstruct_unique(ar, [unique[i] for i in mine], size) if mine else None
    rows: dict[str, np.ndarray] = {}
    for idx, mat in processes.gather((mine, part)):
        for j, i in enumerate(idx):
            rows[unique[i]] = mat[j]
    return np.stack([rows[t] for t in texts])


__all__ = ["generate", "reconstruct"]
