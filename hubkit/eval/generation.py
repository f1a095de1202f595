"""How the AV generates during an eval (recorded verbatim in eval.json), and running it once per AV."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hubkit.verbalizer import Explanation


@dataclass
class Generation:
    """How the AV generated (recorded verbatim in eval.json)."""

    max_new_tokens: int = 64
    batch_size: int = 16
    ar_batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    engine: str = "transformers"
    """Where the AV generates (`hubkit.engines`): transformers, vllm, auto or a vllm serve URL."""

    def record(self, scheme: str) -> dict:
        """These settings for eval.json, with ``engine_resolved``: the engine `engine` names for an AV
        injecting by `scheme` on this machine (``auto`` made concrete)."""
        from dataclasses import asdict

        from hubkit import engines

        return {**asdict(self), "engine_resolved": engines.resolve(self.engine, scheme)}

    def run(self, av, vectors: torch.Tensor, seed: int, progress: bool = False) -> list[Explanation]:
        """`av.explain_detailed` with these settings (the seed is used only when sampling)."""
        return av.explain_detailed(
            vectors,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed if self.do_sample else None,
            progress=progress,
            engine=self.engine,
        )
