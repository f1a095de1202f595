"""Demo stages 1-5: the base model, then extract → split → label → build (`hubkit.data`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from contextlib import ExitStack

import torch

from hubkit import models
from hubkit.data.build import build_from_dirs
from hubkit.data.corpus import Corpus, load_corpus
from hubkit.data.extract import ExtractConfig, extract
from hubkit.data.label import LabelCache, label_table
from hubkit.data.labeler_registry import make_labeler
from hubkit.data.labelers import TransformersLabeler
from hubkit.data.sidecar import read_sidecar
from hubkit.data.split import split_table
from hubkit.demo.progress import CountingLabeler, bar
from hubkit.demo.results import BaseModel, Built, Extracted, Labeled, Splits
from hubkit.demo.settings import DEMO_ORG, QUICK_MODEL, DemoError
from hubkit.demo.state import Demo
from hubkit.identity import hub_id
from hubkit.layers import default_layer
from hubkit.precision import resolve_dtype
from hubkit.testing import MARKER, make_tiny_model


def stage_base(d: Demo) -> BaseModel:
    s = d.settings
    if s.quick:
        tiny = make_tiny_model("llama", d_model=64, n_layers=3, seed=s.seed)
        with torch.no_grad():  # sharper logits, so a few LoRA steps move the loss (as in the unit tests)
            tiny.model.lm_head.weight.mul_(10.0)
        path = tiny.save(d.layout.base)
        n_layers = tiny.model.config.num_hidden_layers
        return BaseModel(
            base=str(path),
            layer=default_layer(n_layers),
            n_layers=n_layers,
            card_base=f"{DEMO_ORG}/{QUICK_MODEL}-random",
            description=f"tiny random Llama (d=64, {n_layers} blocks) at {path}",
        )
    spec = models.get_spec(s.model)
    path = models.prepare(spec.name, progress=d.echo)
    return BaseModel(
        base=spec.name,
        layer=spec.nla_layer,
        n_layers=spec.n_layers,
        card_base=None,
        description=f"{spec.hf_repo} ({spec.quantization} GGUF, converted) at {path}; "
        f"layer {spec.nla_layer} of {spec.n_layers}",
    )


def sample_corpus(d: Demo) -> Corpus:
    """A seeded sample of the bundled corpus, spread over its topics, in file order."""
    s = d.settings
    full = load_corpus("bundled")
    need = sum(s.docs.values())

    def rank(doc) -> str:
        return hashlib.sha256(f"{s.seed}\0{doc.doc_id}".encode()).hexdigest()

    chosen = {doc.doc_id for doc in sorted(full.documents, key=rank)[:need]}
    docs = tuple(doc for doc in full.documents if doc.doc_id in chosen)
    return Corpus(f"bundled[sample {need}, seed {s.seed}]", docs)


def stage_extract(d: Demo, base: BaseModel) -> Extracted:
    corpus = sample_corpus(d)
    model, tok = models.load(base.base, dtype=resolve_dtype(d.settings.dtype, "cpu"))
    config = ExtractConfig(
        layer=base.layer,
        positions_per_doc=d.settings.positions_per_doc,
        min_position=8,
        max_length=128,
        seed=d.settings.seed,
    )
    pbar = bar(len(corpus), "extract (documents)", d.progress)

    def on_batch(chunk: int, done: int) -> None:
        pbar.n = min(len(corpus), chunk * config.docs_per_chunk + done)
        pbar.refresh()

    path = extract(
        corpus,
        model,
        tok,
        d.layout.data / "activations.parquet",
        config,
        base_model=hub_id(base.base),
        on_batch=on_batch,
    )
    pbar.close()
    return Extracted(path=str(path), rows=read_sidecar(path).rows, docs=len(corpus), layer=base.layer)


def stage_split(d: Demo, extracted: Extracted) -> Splits:
    docs = d.settings.docs
    total = sum(docs.values())
    fractions = {k: v / total for k, v in docs.items()}
    folder = d.layout.data / "splits"
    paths = split_table(extracted.path, folder, fractions, d.settings.seed)
    return Splits(folder=str(folder), rows={k: read_sidecar(p).rows for k, p in paths.items()})


def stage_label(d: Demo, base: BaseModel, splits: Splits) -> Labeled:
    """Context labels (the default) for both SFT halves and the eval rows; an LLM labeler for the two
    SFT halves only, with its answers cached in the shared label cache."""

    s = d.settings
    counts: Counter[str] = Counter()
    out = d.layout.data / "labeled"
    with ExitStack() as closing:
        if s.context_labels:
            labeler, auditor, cache = make_labeler(s.labeler), None, None
            tables = ("av_sft", "ar_sft", "eval")
        else:
            labeler, cache, tables = _llm_labeler(d, base, splits, closing)
            auditor = labeler
        for t in tables:
            path = label_table(
                f"{splits.folder}/{t}.parquet",
                out / f"{t}.parquet",
                labeler,
                auditor,
                rows_per_chunk=64,
                cache=cache,
            )
            counts.update(read_sidecar(path).labeling.status_counts)
    return Labeled(folder=str(out), labeler=labeler.name, status_counts=dict(counts))


def _llm_labeler(d: Demo, base: BaseModel, splits: Splits, closing: ExitStack):
    """The base model itself as labeler and auditor (`--labeler transformers`), with a progress bar; the bar
    and the label cache close with `closing`."""
    s = d.settings
    model, tok = models.load(base.base, dtype=resolve_dtype(s.dtype, "cpu"))
    batch = 16
    backend = TransformersLabeler(
        model, tok, f"transformers:{s.model}", max_new_tokens=s.label_tokens, batch_size=batch
    )
    tables = ("av_sft", "ar_sft")
    n = sum(splits.rows[t] for t in tables)
    pbar = closing.enter_context(bar(2 * n, "label (labeler + auditor answers)", d.progress))
    labeler = CountingLabeler(backend, pbar, batch, MARKER if s.quick else "")
    # A real model's labels go to the shared cache (a --fresh run, or another tool, reuses them); the
    # tiny model's stay in the run folder.
    cache = LabelCache(d.layout.data / "labels.sqlite" if s.quick else LabelCache.default_path())
    closing.callback(cache.close)
    return labeler, cache, tables


def stage_build(d: Demo, splits: Splits, labeled: Labeled) -> Built:
    paths = build_from_dirs(splits.folder, labeled.folder, d.layout.data / "built")
    rows = {k: read_sidecar(p).rows for k, p in paths.items()}
    if rows.get("av_sft", 0) < 2 or rows.get("ar_sft", 0) < 2:
        raise DemoError(f"demo: too few usable labeled rows to train on ({rows}); raise --rows")
    return Built(tables={k: str(p) for k, p in paths.items()}, rows=rows)
