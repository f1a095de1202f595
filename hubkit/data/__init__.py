"""Stages 0-3 of the NLA data pipeline: extract → split → label → build.

    corpus ──extract──▶ activations.parquet ──split──▶ splits/{av_sft,ar_sft,rl,eval}.parquet
           ──label──▶ labeled/*.parquet ──build──▶ built/{av_sft,ar_sft,rl,eval}.parquet

The stage functions live in their modules (``hubkit.data.extract.extract``, ``split.split_table``,
``label.label_table``, ``build.build_from_dirs``); the package name ``extract`` is the module.

Every table has a ``<name>.parquet.json`` sidecar (`hubkit.data.sidecar`); column layouts are in
`hubkit.data.tables`. Stages 0 and 2 write in resumable chunks (`hubkit.data.chunks`).
"""

from hubkit.data.build import build_from_dirs, build_tables
from hubkit.data.corpus import Corpus, Document, load_corpus
from hubkit.data.extract import ExtractConfig, default_layer
from hubkit.data.label import LabelCache, label_rows, label_table
from hubkit.data.labelers import Labeler, LabelerError, OpenAIChatLabeler, TransformersLabeler
from hubkit.data.sidecar import SIDECAR_SUFFIX, DatasetSidecar, read_sidecar, sidecar_path, write_sidecar
from hubkit.data.split import DEFAULT_FRACTIONS, split_doc_ids, split_table

__all__ = [
    "DEFAULT_FRACTIONS",
    "SIDECAR_SUFFIX",
    "Corpus",
    "DatasetSidecar",
    "Document",
    "ExtractConfig",
    "LabelCache",
    "Labeler",
    "LabelerError",
    "OpenAIChatLabeler",
    "TransformersLabeler",
    "build_from_dirs",
    "build_tables",
    "default_layer",
    "label_rows",
    "label_table",
    "load_corpus",
    "read_sidecar",
    "sidecar_path",
    "split_doc_ids",
    "split_table",
    "write_sidecar",
]
