"""Stages 0-3 of the NLA data pipeline: extract → split → label → build.

    corpus ──extract──▶ activations.parquet ──split──▶ splits/{av_sft,ar_sft,rl,eval}.parquet
           ──label──▶ labeled/*.parquet ──build──▶ built/{av_sft,ar_sft,rl,eval}.parquet

The stage functions live in their modules (``hubkit.data.extract.extract``, ``split.split_table``,
``label.label_table``, ``build.build_from_dirs``); the package name ``extract`` is the module.

Every table has a ``<name>.parquet.json`` sidecar (`hubkit.data.sidecar`); column layouts are in
`hubkit.data.tables`. Stages 0 and 2 write in resumable chunks (`hubkit.data.chunks`).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_from_dirs": "hubkit.data.build",
    "build_tables": "hubkit.data.build",
    "Corpus": "hubkit.data.corpus",
    "Document": "hubkit.data.corpus",
    "load_corpus": "hubkit.data.corpus",
    "ExtractConfig": "hubkit.data.extract",
    "default_layer": "hubkit.data.extract",
    "LabelCache": "hubkit.data.label",
    "label_rows": "hubkit.data.label",
    "label_table": "hubkit.data.label",
    "Labeler": "hubkit.data.labelers",
    "LabelerError": "hubkit.data.labelers",
    "OpenAIChatLabeler": "hubkit.data.labelers",
    "TransformersLabeler": "hubkit.data.labelers",
    "SIDECAR_SUFFIX": "hubkit.data.sidecar",
    "DatasetSidecar": "hubkit.data.sidecar",
    "read_sidecar": "hubkit.data.sidecar",
    "sidecar_path": "hubkit.data.sidecar",
    "write_sidecar": "hubkit.data.sidecar",
    "DEFAULT_FRACTIONS": "hubkit.data.split",
    "split_doc_ids": "hubkit.data.split",
    "split_table": "hubkit.data.split",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a stage's module on first use: `import hubkit.data.sidecar` must not load torch."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hubkit.data' has no attribute {name!r}")
