"""Generation for an `ActivationVerbalizer` on an external engine: the AV's own prompt embeddings (the
vector already injected) are sent, and the new token ids come back for the AV to decode exactly as it
decodes the transformers path."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hubkit.errors import EngineError

if TYPE_CHECKING:
    from torch import Tensor

    from hubkit.verbalizer import ActivationVerbalizer

log = logging.getLogger(__name__)

ENGINE_CHUNK = 1024
"""Rows handed to an engine per call (it batches them itself; this bounds the embeddings held)."""


def generate_on_engine(
    av: ActivationVerbalizer, v: Tensor, engine: str, k: int, seed: int | None, **opts
) -> list[list[int]] | None:
    """New token ids from `engine` for the AV's call, or None when the transformers path should run:
    `engine` resolves to it, or is "auto" and the chosen engine failed (said in one log line)."""
    from hubkit import engines

    name = engines.resolve(engine, av.meta.injection.scheme)
    if name == "transformers":
        return None
    try:
        return generate_for(av, v, name, k, seed, **opts)
    except EngineError as err:
        if engine != "auto":
            raise
        log.warning("engine auto: %s; generating with transformers instead", err)
        return None


def generate_for(
    av: ActivationVerbalizer,
    v: Tensor,
    engine: str,
    k: int,
    seed: int | None,
    max_new_tokens: int,
    min_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
) -> list[list[int]]:
    """New token ids per row (`k` per vector) from `engine` (``vllm`` or a URL), in chunks of `ENGINE_CHUNK`.

    A local engine loads the AV's base (and adapter) itself; a remote one is given the adapter folder."""
    from hubkit import engines
    from hubkit.engines import source as sources

    source = None
    adapter = sources.adapter_folder(av.model, av.adapter_name)
    if engine == "vllm":
        source = sources.source_for(av.model, av.adapter_name, quant=av.meta.adapter.quant)
        adapter = source.adapter
    runner = engines.get_engine(engine, source)
    rows = v.repeat_interleave(k, dim=0)
    ids: list[list[int]] = []
    for start in range(0, len(rows), ENGINE_CHUNK):
        ids += runner.generate_from_embeddings(
            av.prompt_embeddings(rows[start : start + ENGINE_CHUNK]),
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            seed=None if seed is None else seed + start,
            stop_token_ids=list(av.stop_ids),
            adapter=adapter,
        )
    return ids
