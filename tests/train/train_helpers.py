"""Helpers for training tests: parquet tables written from constructed data, recipes over a tiny base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

D_MODEL = 32


def vector_column(vectors: torch.Tensor) -> pa.FixedSizeListArray:
    v = vectors.float().contiguous()
    return pa.FixedSizeListArray.from_arrays(pa.array(v.flatten().numpy(), pa.float32()), v.shape[1])


def write_sft(path: Path, vectors: torch.Tensor, texts: list[str]) -> Path:
    """An av_sft / ar_sft table (same columns, the pipeline's order differs only)."""
    n = len(texts)
    table = pa.table(
        {
            "doc_id": [f"doc{i}" for i in range(n)],
            "position": list(range(n)),
            "vector": vector_column(vectors),
            "explanation": texts,
        }
    )
    pq.write_table(table, path)
    return path


def write_rl(path: Path, vectors: torch.Tensor) -> Path:
    n = vectors.shape[0]
    table = pa.table(
        {
            "doc_id": [f"doc{i}" for i in range(n)],
            "position": list(range(n)),
            "prefix": ["some text"] * n,
            "vector": vector_column(vectors),
        }
    )
    pq.write_table(table, path)
    return path


TEXTS = [
    "a noun about animals",
    "<explanation>the capital of France</explanation>",
    "numbers in a list",
    "rain falls in spring",
    "python code with symbols",
    "<explanation>a river flows to the sea</explanation>",
    "the cat sat on the mat",
    "a short explanation",
]


def make_recipe(base: Path, out: Path, **sections: Any):
    """A recipe over the tiny base; `sections` are the `av`/`ar`/`grpo`/`nla` mappings (or top-level keys).

    float32 unless `dtype` is given: tests that compare against an independent computation need the
    same precision on every machine (``auto`` is bfloat16 on CPUs with native bf16, float32 elsewhere).
    """
    from hubkit.train.recipe import recipe_from_dict

    data: dict[str, Any] = {
        "base_model": str(base),
        "layer": 1,
        "output_dir": str(out),
        "seed": 0,
        "dtype": "float32",
    }
    data.update(sections)
    return recipe_from_dict(data)


def response_logprobs(av, vector: torch.Tensor, text: str) -> torch.Tensor:
    """Per-token log-probs of ``<explanation>text</explanation><eos>`` after the AV prompt, with `vector`
    written into the marker's embedding row by a plain hook (independent of hubkit's injection code)."""
    import torch.nn.functional as F

    tok, meta = av.tokenizer, av.meta
    inner = text.split("<explanation>")[-1].split("</explanation>")[0].strip()
    response = tok(f"<explanation>{inner}</explanation>", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id
    ]
    ids = torch.tensor([av.prompt_ids + response])
    pos = av.prompt_ids.index(meta.injection.marker_token_id)
    row = (vector.float() * meta.injection_scale_value() / vector.float().norm())[None, None]

    def hook(_m, _a, out):
        return torch.cat([out[:, :pos], row.to(out.dtype), out[:, pos + 1 :]], dim=1)

    handle = av.model.get_input_embeddings().register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = av.model(input_ids=ids).logits[0].float()
    finally:
        handle.remove()
    p = len(av.prompt_ids)
    logp = F.log_softmax(logits[p - 1 : -1], dim=-1)
    return logp.gather(-1, ids[0, p:, None]).squeeze(-1)


def torchrun(args: list[str], procs: int = 2, timeout: int = 600):
    """`torchrun --nproc_per_node procs ARGS` from the repository root, one torch thread per process."""
    import os
    import subprocess

    return subprocess.run(
        ["torchrun", "--nproc_per_node", str(procs), *args],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
