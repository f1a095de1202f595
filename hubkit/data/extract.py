"""Stage 0: residual-stream vectors at layer L for sampled token positions of a corpus.

Each document is tokenized with BOS in front, cut to ``max_length`` tokens, and run (right-padded, in
batches) only up to block L. ``positions_per_doc`` positions are drawn without replacement from the
non-special tokens at index ``>= min_position`` by a generator seeded from (seed, doc_id), so a
document's positions do not depend on the other documents in the run or its batch. The activations
table is written in resumable chunks of ``docs_per_chunk`` documents (`hubkit.data.chunks`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from hubkit import arch, models, processes
from hubkit.data import chunks
from hubkit.data.corpus import Corpus, Document
from hubkit.data.sidecar import (
    CorpusInfo,
    DatasetSidecar,
    ExtractionInfo,
    git_commit,
    hubkit_version,
    write_sidecar,
)
from hubkit.data.tables import activation_schema, vector_array
from hubkit.errors import DataError
from hubkit.layers import default_layer
from hubkit.precision import apply_thread_policy_unless_set, check_device, resolve_dtype
from hubkit.vectors import check_vectors

log = logging.getLogger(__name__)

BatchCallback = Callable[[int, int], None]  # (chunk index, documents done in the chunk)


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction run (all of them go into the sidecar and the resume check)."""

    layer: int
    positions_per_doc: int = 8
    min_position: int = 8
    max_length: int = 128
    seed: int = 0
    batch_size: int = 8
    docs_per_chunk: int = 64
    add_bos: bool = True
    skip_short: bool = True  # False: a document with no eligible position is an error

    def __post_init__(self) -> None:
        for name in ("positions_per_doc", "max_length", "batch_size", "docs_per_chunk"):
            if getattr(self, name) < 1:
                raise DataError(f"extract: `{name}` must be >= 1, got {getattr(self, name)}")
        if self.layer < 0:
            raise DataError(f"extract: `layer` must be >= 0, got {self.layer}")
        if not 0 <= self.min_position < self.max_length:
            raise DataError(
                f"extract: `min_position` must be in 0..max_length-1 ({self.max_length - 1}), "
                f"got {self.min_position}"
            )


def set_threads(threads: int | None) -> int:
    """Torch threads: `threads` when given, else hubkit's policy (physical cores available, shared by the
    processes a launcher started on this node)."""
    if threads:
        torch.set_num_threads(threads)
        return threads
    return apply_thread_policy_unless_set(workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def load_base(name: str, revision: str | None, dtype: str, device: str) -> tuple[nn.Module, Any]:
    """(model, tokenizer): an offline registry model or local folder via hubkit.models, else transformers
    at `revision`; `dtype` may be ``auto`` (bfloat16 where the hardware runs it natively, else float32)."""
    device = processes.local_device(device)
    check_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if revision is None:
        return models.load(name, dtype=torch_dtype, device=device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=torch_dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(name, revision=revision)


def tokenize(tokenizer, texts: Sequence[str], add_bos: bool, max_length: int) -> list[list[int]]:
    """Token ids per text: BOS (when the tokenizer has one and `add_bos`) + the text's tokens, cut to `max_length`."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    prefix = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    return [(prefix + list(ids))[:max_length] for ids in encoded]


def eligible_positions(ids: Sequence[int], special_ids: set[int], min_position: int) -> list[int]:
    return [p for p in range(min_position, len(ids)) if ids[p] not in special_ids]


def sample_positions(eligible: Sequence[int], k: int, seed: int, doc_id: str) -> list[int]:
    """Up to `k` distinct positions from `eligible`, sorted; reproducible from (seed, doc_id)."""
    if len(eligible) <= k:
        return list(eligible)
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    picks = rng.choice(len(eligible), size=k, replace=False)
    return sorted(int(eligible[i]) for i in picks)


def pad_id(tokenizer) -> int:
    """The id batches are right-padded with: the pad token, else EOS, else BOS, else 0."""
    ids = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    return next((i for i in ids if i is not None), 0)


def _special_ids(tokenizer) -> set[int]:
    ids = (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return set(tokenizer.all_special_ids) | {i for i in ids if i is not None}


def extract_documents(
    model: nn.Module,
    tokenizer,
    docs: Sequence[Document],
    config: ExtractConfig,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> pa.Table:
    """Rows of the activations table for `docs` (in document order, positions ascending)."""
    d_model = arch.hidden_size(model)
    special = _special_ids(tokenizer)
    all_ids = tokenize(tokenizer, [d.text for d in docs], config.add_bos, config.max_length)
    picks: list[list[int]] = []  # a document too short gets none (`extract` refuses it first when strict)
    for doc, ids in zip(docs, all_ids):
        eligible = eligible_positions(ids, special, config.min_position)
        picks.append(sample_positions(eligible, config.positions_per_doc, config.seed, doc.doc_id))
    vectors: list[np.ndarray | None] = [None] * len(docs)
    # Longest first, so each batch holds documents of similar length (little padding).
    order = sorted((i for i in range(len(docs)) if picks[i]), key=lambda i: -len(all_ids[i]))
    device, pad = next(model.parameters()).device, pad_id(tokenizer)
    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        batch = [torch.tensor(all_ids[i]) for i in rows]  # right-padded, with its attention mask
        input_ids, mask = arch.right_padded(batch, pad)
        input_ids, mask = input_ids.to(device), mask.to(device)
        hidden = arch.hidden_at_block(model, config.layer, input_ids=input_ids, attention_mask=mask)
        for b, i in enumerate(rows):
            vectors[i] = hidden[b, picks[i]].float().cpu().numpy()
        if on_batch is not None:
            on_batch(start + len(rows))
    doc_col, pos_col, tok_col, prefix_col, vec_rows = [], [], [], [], []
    for doc, ids, positions, vecs in zip(docs, all_ids, picks, vectors):
        for j, p in enumerate(positions):
            doc_col.append(doc.doc_id)
            pos_col.append(p)
            tok_col.append(tokenizer.decode([ids[p]]))
            prefix_col.append(tokenizer.decode(ids[: p + 1], skip_special_tokens=True))
            vec_rows.append(vecs[j])
    matrix = np.stack(vec_rows) if vec_rows else np.zeros((0, d_model), np.float32)
    if len(matrix):  # a NaN (an fp16 overflow, a broken base) must not reach a table silently
        check_vectors(
            torch.from_numpy(matrix),
            f"layer {config.layer} of the model (documents {docs[0].doc_id!r}…)",
            d_model,
            "the residual",
        )
    columns = [doc_col, pos_col, tok_col, prefix_col, vector_array(matrix)]
    return pa.Table.from_arrays(columns, schema=activation_schema(d_model))  # lists take the schema's types


def _precheck(tokenizer, corpus: Corpus, config: ExtractConfig) -> None:
    """Fail before any model work when no document (or, strictly, some document) is long enough."""
    special = _special_ids(tokenizer)
    short, longest = [], 0
    for start in range(0, len(corpus), 1024):
        docs = corpus.documents[start : start + 1024]
        all_ids = tokenize(tokenizer, [d.text for d in docs], config.add_bos, config.max_length)
        for doc, ids in zip(docs, all_ids):
            longest = max(longest, len(ids))
            if not eligible_positions(ids, special, config.min_position):
                short.append((doc.doc_id, len(ids)))
    if len(short) == len(corpus):
        raise DataError(
            f"corpus {corpus.name!r}: every document is shorter than the minimum position: no "
            f"non-special token at position >= min_position={config.min_position} in any of its "
            f"{len(corpus)} documents (longest: {longest} tokens with BOS); lower --min-position"
        )
    if short and not config.skip_short:
        doc_id, n_tokens = short[0]
        raise DataError(
            f"document {doc_id!r} has {n_tokens} tokens (with BOS, cut at max_length={config.max_length}) and no "
            f"non-special token at position >= min_position={config.min_position}; lower --min-position, drop "
            f"short documents, or let them be skipped (skip_short) ({len(short)} such documents in all)"
        )
    if short:
        log.warning(
            "corpus %r: %d of %d documents are shorter than min_position=%d and are skipped",
            corpus.name,
            len(short),
            len(corpus),
            config.min_position,
        )


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of a few weights, so a resumed run is refused when the weights changed under the same name."""
    tm = arch.text_model(model)
    digest = hashlib.sha256()
    for tensor in (tm.embed_tokens.weight[:16], next(tm.layers[0].parameters()).reshape(-1)[:4096]):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def extract(
    corpus: Corpus,
    model: nn.Module,
    tokenizer,
    out: str | Path,
    config: ExtractConfig,
    *,
    base_model: str,
    revision: str | None = None,
    overwrite: bool = False,
    on_batch: BatchCallback | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the activations table for `corpus` at `out` (+ sidecar); resumes an interrupted run.

    `base_model`/`revision` name the weights in the sidecar (what an NLA's meta will call its base).
    """
    out = Path(out)
    if len(corpus) == 0:
        raise DataError(f"corpus {corpus.name!r} is empty")
    n = arch.num_layers(model)
    if not 0 <= config.layer < n:
        raise DataError(
            f"layer {config.layer} is beyond {base_model}'s depth: it has {n} decoder blocks, so the layer "
            f"must be in 0..{n - 1} (default two thirds deep: {default_layer(n)})"
        )
    d_model = arch.hidden_size(model)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    corpus_info = CorpusInfo(name=corpus.name, sha256=corpus.sha256, n_docs=len(corpus))
    params = {
        "stage": "extract",
        "corpus": asdict(corpus_info),
        "base_model": base_model,
        "revision": revision,
        "model_fingerprint": model_fingerprint(model),
        "dtype": dtype,
        "config": asdict(config),
    }
    if chunks.prepare_output(out, params, overwrite):
        log.info("%s: already extracted with these settings", out)
        return out
    _precheck(tokenizer, corpus, config)
    n_chunks = math.ceil(len(corpus) / config.docs_per_chunk)

    def make_chunk(i: int) -> pa.Table:
        docs = corpus.documents[i * config.docs_per_chunk : (i + 1) * config.docs_per_chunk]
        callback = None if on_batch is None else (lambda done: on_batch(i, done))
        return extract_documents(model, tokenizer, docs, config, on_batch=callback)

    chunks.run_chunked(out, params, n_chunks, make_chunk, activation_schema(d_model), on_chunk=on_chunk)
    rows = pq.ParquetFile(out).metadata.num_rows
    sidecar = DatasetSidecar(
        table="activations",
        rows=rows,
        extraction=ExtractionInfo(
            base_model=base_model,
            revision=revision,
            layer=config.layer,
            d_model=d_model,
            seed=config.seed,
            positions_per_doc=config.positions_per_doc,
            min_position=config.min_position,
            max_length=config.max_length,
            add_bos=config.add_bos and tokenizer.bos_token_id is not None,
            dtype=dtype,
        ),
        corpus=corpus_info,
        columns=activation_schema(d_model).names,
        run_sha256=chunks.params_sha256(params),
        git_commit=git_commit(),
        hubkit_version=hubkit_version(),
    )
    processes.on_main(lambda: write_sidecar(out, sidecar))  # rank 0 writes; every rank returns after
    log.info("%s: %d rows from %d documents at layer %d", out, rows, len(corpus), config.layer)
    return out
