"""`Generation`: the options every eval entry point shares (how the AV generates, the eval's seed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from hubkit import engines
from hubkit.verbalizer import Explanation


@dataclass(frozen=True)
class Generation:
    """How the AV generates (recorded verbatim in eval.json) and the seed of rows, controls and bootstrap."""

    max_new_tokens: int = 64
    batch_size: int = 16
    ar_batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    engine: str = "transformers"
    """Where the AV generates (`hubkit.engines`): transformers, vllm, auto or a vllm serve URL."""
    seed: int = 0  # eval.json records it at its top level, not under `generation`

    def settings(self) -> dict:
        """The generation settings as eval.json's ``generation`` records them."""
        return {k: v for k, v in asdict(self).items() if k != "seed"}

    def record(self, scheme: str) -> dict:
        """`settings` with ``engine_resolved``: the engine `engine` names for an AV injecting by `scheme`
        on this machine (``auto`` made concrete)."""
        return {**self.settings(), "engine_resolved": engines.resolve(self.engine, scheme)}

    def run(self, av, vectors: torch.Tensor, progress: bool = False) -> list[Explanation]:
        """`av.explain_detailed` with these settings (the seed is used only when sampling)."""
        settings = {k: v for k, v in self.settings().items() if k != "ar_batch_size"}
        return av.explain_detailed(
            vectors, **settings, seed=self.seed if self.do_sample else None, progress=progress
        )
